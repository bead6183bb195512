//! The cloud registry adapters (`gcr`, `acr`, `ecr`, `ocir`) against fakes
//! of each provider's control plane that check what the real one checks,
//! in front of a real CNCF distribution registry with token authentication
//! that receives every push; and the organisation's registry swapped while
//! releases run.
//!
//! Needs `docker-registry` and `skopeo` (Debian) and what
//! `tests/support/src/static_engine.rs` needs.

use crate::releasing;
use slipway_test_support::aws;
use slipway_test_support::azure;
use slipway_test_support::google;
use slipway_test_support::oracle;
use slipway_test_support::registry;
use slipway_test_support::token_server;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use aws::FakeEcr;
use azure::FakeAzure;
use google::FakeGoogle;
use oracle::FakeOcir;
use registry::{TestRegistry, skopeo_inspect};
use releasing::Releaser;
use serde_json::{Value, json};
use token_server::{ISSUER, SERVICE, TokenIssuer};

/// `host:port` of a URL.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap().to_string()
}

/// A token issuer, its realm, and a registry trusting it.
async fn token_registry() -> (Arc<TokenIssuer>, String, TestRegistry) {
    let issuer = TokenIssuer::new(&[]);
    let realm = issuer.serve().await;
    let registry = TestRegistry::token(&realm, SERVICE, ISSUER, &issuer.cert_pem);
    (issuer, realm, registry)
}

/// Sets the registry; answers the API's status and body.
async fn put_registry(server: &Releaser, body: Value) -> (u16, Value) {
    server.call("PUT", "/api/v1/registry", body).await
}

/// A refused change: 422 with `path`, and none of `secrets` in the answer.
async fn refused_at(server: &Releaser, body: Value, path: &str, secrets: &[&str]) -> String {
    let (status, error) = put_registry(server, body.clone()).await;
    assert_eq!(status, 422, "{body}: {error}");
    assert_eq!(error["error"]["path"], path, "{body}: {error}");
    for secret in secrets {
        assert!(
            !error.to_string().contains(secret),
            "{error} echoes a secret"
        );
    }
    error["error"]["message"].as_str().unwrap().to_string()
}

/// The reference and digest of a `ready` release.
fn ready(release: &Value) -> (String, String) {
    assert_eq!(release["status"], "ready", "{release}");
    (
        release["image"]["reference"].as_str().unwrap().to_string(),
        release["image"]["digest"].as_str().unwrap().to_string(),
    )
}

fn failed(release: &Value) -> String {
    assert_eq!(release["status"], "failed", "{release}");
    release["error"].as_str().unwrap().to_string()
}

fn gcr_settings(registry: &str, google: &FakeGoogle, realm: &str, key: &str) -> Value {
    json!({
        "adapter": "gcr",
        "settings": {
            "registry": "europe-west1-docker.pkg.dev", "project": "acme-flows", "repository": "flows",
            "endpoints": {"registry": format!("http://{registry}"), "token": google.token_url(), "artifact-registry": google.url}
        },
        "secrets": {"service-account-key": key},
        "allowed-hosts": [host_of(realm), host_of(&google.url)]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcr_exchanges_a_signed_key_for_tokens_and_checks_artifact_registry() {
    let (issuer, realm, registry) = token_registry().await;
    let google = FakeGoogle::start(&issuer).await;
    let server = Releaser::start().await;
    let key = google::key_file(google::PRIVATE_KEY);
    let settings = |key: &str| gcr_settings(&registry.address, &google, &realm, key);

    // Keys that cannot sign are refused before any network call, naming
    // the secret and never quoting it.
    let broken = r#"{"type": "service_account", "private_key": "MIIEvQ-not-json"#;
    refused_at(
        &server,
        settings(broken),
        "/secrets/service-account-key",
        &["MIIEvQ"],
    )
    .await;
    let no_key = google::key_file(
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJpdHM=\n-----END PRIVATE KEY-----\n",
    );
    refused_at(
        &server,
        settings(&no_key),
        "/secrets/service-account-key/private_key",
        &["c2VjcmV0"],
    )
    .await;
    let mut no_project = settings(&key);
    no_project["settings"]
        .as_object_mut()
        .unwrap()
        .remove("project");
    refused_at(&server, no_project, "/settings/project", &[]).await;
    assert_eq!(google.exchanges.load(Ordering::SeqCst), 0);

    // Artifact Registry does not create repositories: a missing one is named.
    let (status, body) = put_registry(&server, settings(&key)).await;
    assert_eq!(status, 200, "{body}");
    let error = failed(&server.release("orders").await);
    assert!(
        error.contains(
            "`projects/acme-flows/locations/europe-west1/repositories/flows` does not exist"
        ),
        "{error}"
    );

    // Once it exists, the key's JWT (checked by the fake: RS256, issuer,
    // audience, scope, lifetime) buys an access token that logs in to the
    // registry as `oauth2accesstoken`; skopeo sees the same image.
    google
        .repositories
        .lock()
        .unwrap()
        .insert("projects/acme-flows/locations/europe-west1/repositories/flows".into());
    let release = server.release("orders").await;
    let (reference, digest) = ready(&release);
    assert_eq!(
        reference,
        format!("{}/acme-flows/flows/orders:v1", registry.address)
    );
    assert!(google.refusals.lock().unwrap().is_empty());
    let exchanges = google.exchanges.load(Ordering::SeqCst);
    assert_eq!(exchanges, 1, "one exchange served the check and the push");
    let inspected = skopeo_inspect(
        &format!("{}/acme-flows/flows/orders@{digest}", registry.address),
        None,
    );
    assert!(inspected.is_err(), "the registry wants a token");
    issuer.add_user("skopeo", "skopeo-password");
    let inspected = skopeo_inspect(
        &format!("{}/acme-flows/flows/orders@{digest}", registry.address),
        Some("skopeo:skopeo-password"),
    )
    .unwrap();
    assert_eq!(inspected["Digest"], digest);

    // The access token is kept for the next release.
    ready(&server.release("billing").await);
    assert_eq!(google.exchanges.load(Ordering::SeqCst), exchanges);

    // A registry token that expires mid-release is renewed, with a new
    // access token since the registry refused the old credentials.
    issuer.stale.store(1, Ordering::SeqCst);
    ready(&server.release("shipping").await);
    assert_eq!(
        issuer.stale.load(Ordering::SeqCst),
        0,
        "the stale token was used"
    );
    assert_eq!(google.exchanges.load(Ordering::SeqCst), exchanges + 1);

    // A well-formed key Google does not know: Google's reason, no secret.
    let unknown = google::key_file(google::UNREGISTERED_KEY);
    let (status, body) = put_registry(&server, settings(&unknown)).await;
    assert_eq!(status, 200, "{body}");
    let release = server.release_version("orders", 1).await;
    let error = failed(&release);
    assert!(error.contains("Invalid JWT Signature"), "{error}");
    assert!(error.contains("/secrets/service-account-key"), "{error}");
    assert!(!release.to_string().contains("PRIVATE KEY"));
}

fn ecr_settings(ecr: &FakeEcr, extra: Value) -> Value {
    let mut settings = json!({
        "account-id": aws::ACCOUNT, "region": aws::REGION, "access-key-id": aws::ACCESS_KEY_ID,
        "namespace": "flows",
        "endpoints": {"api": ecr.api, "registry": format!("http://{}", ecr.registry())}
    });
    for (key, value) in extra.as_object().unwrap() {
        settings[key] = value.clone();
    }
    json!({
        "adapter": "ecr", "settings": settings,
        "secrets": {"secret-access-key": aws::SECRET_ACCESS_KEY},
        "allowed-hosts": [host_of(&ecr.api)]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_signs_its_calls_creates_repositories_and_renews_expired_tokens() {
    let (issuer, _, registry) = token_registry().await;
    let ecr = FakeEcr::start(&issuer, &format!("http://{}", registry.address)).await;
    let server = Releaser::start().await;
    let secret = aws::SECRET_ACCESS_KEY;

    // Bad settings name the field; the secret is never echoed.
    let mut no_region = ecr_settings(&ecr, json!({}));
    no_region["settings"]
        .as_object_mut()
        .unwrap()
        .remove("region");
    let message = refused_at(&server, no_region, "/settings/region", &[secret]).await;
    assert!(message.contains("region"), "{message}");
    refused_at(
        &server,
        ecr_settings(&ecr, json!({"region": "Ireland"})),
        "/settings/region",
        &[secret],
    )
    .await;
    refused_at(
        &server,
        ecr_settings(&ecr, json!({"access-key-id": "not a key"})),
        "/settings/access-key-id",
        &[secret],
    )
    .await;
    refused_at(
        &server,
        ecr_settings(&ecr, json!({"account-id": "12345"})),
        "/settings/account-id",
        &[secret],
    )
    .await;
    let mut no_secret = ecr_settings(&ecr, json!({}));
    no_secret["secrets"] = json!({});
    refused_at(&server, no_secret, "/secrets/secret-access-key", &[]).await;
    assert!(
        ecr.calls.lock().unwrap().is_empty(),
        "no call before the settings pass"
    );

    // A signed GetAuthorizationToken, the repository created first, a push
    // with `AWS:<password>`, and a manifest PUT answered without Location.
    let (status, body) = put_registry(&server, ecr_settings(&ecr, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let release = server.release("orders").await;
    let (reference, digest) = ready(&release);
    assert_eq!(reference, format!("{}/flows/orders:v1", ecr.registry()));
    assert_eq!(
        ecr.refused.load(Ordering::SeqCst),
        0,
        "every signature verified"
    );
    assert_eq!(
        *ecr.calls.lock().unwrap(),
        ["CreateRepository", "GetAuthorizationToken"],
        "the repository is made before the push logs in"
    );
    assert!(ecr.repositories.lock().unwrap().contains("flows/orders"));
    issuer.add_user("skopeo", "skopeo-password");
    let inspected = skopeo_inspect(
        &format!("{}/flows/orders@{digest}", registry.address),
        Some("skopeo:skopeo-password"),
    )
    .unwrap();
    assert_eq!(inspected["Digest"], digest);

    // The 12-hour token is kept; an existing repository is not asked again.
    ready(&server.release("orders").await);
    assert_eq!(ecr.count("GetAuthorizationToken"), 1);
    assert_eq!(ecr.count("CreateRepository"), 1);

    // ECR expires the token mid-push and answers 403: the host renews it once.
    *ecr.expire_after.lock().unwrap() = Some(3);
    ready(&server.release("billing").await);
    assert_eq!(ecr.count("GetAuthorizationToken"), 2);

    // With creation off, a missing repository is reported before any upload.
    let (status, _) = put_registry(
        &server,
        ecr_settings(&ecr, json!({"create-repositories": false})),
    )
    .await;
    assert_eq!(status, 200);
    let error = failed(&server.release("shipping").await);
    assert!(error.contains("`flows/shipping` does not exist"), "{error}");
    assert!(error.contains("create-repositories is off"), "{error}");

    // Temporary credentials sign with their session token.
    let mut temporary = ecr_settings(&ecr, json!({"access-key-id": aws::TEMPORARY_KEY_ID}));
    temporary["secrets"] =
        json!({"secret-access-key": aws::TEMPORARY_SECRET, "session-token": aws::SESSION_TOKEN});
    let (status, body) = put_registry(&server, temporary).await;
    assert_eq!(status, 200, "{body}");
    ready(&server.release("shipping").await);
    assert_eq!(ecr.refused.load(Ordering::SeqCst), 0);

    // A wrong secret: AWS's reason, and the secret nowhere.
    let mut wrong = ecr_settings(&ecr, json!({"namespace": "other"}));
    wrong["secrets"] = json!({"secret-access-key": "wJalrXUtnFEMI-wrong-secret-EXAMPLEKEY"});
    let (status, _) = put_registry(&server, wrong).await;
    assert_eq!(status, 200);
    let release = server.release("orders").await;
    let error = failed(&release);
    assert!(
        error.contains("signature we calculated does not match"),
        "{error}"
    );
    assert!(!release.to_string().contains("wrong-secret"));
    assert_eq!(ecr.refused.load(Ordering::SeqCst), 1);
}

/// AWS's published SigV4 vectors, presented to the fake's verifier as
/// requests: it accepts each, and refuses each with one byte changed.
#[test]
fn the_aws_fake_verifies_the_published_sigv4_vectors() {
    use axum::http::{HeaderMap, Uri};
    // The vectors' key is not the fake's: check the signature math directly.
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let vectors = [
        (
            "GET",
            "/",
            "",
            "",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "GET",
            "/?Param2=value2&Param1=value1",
            "",
            "",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        (
            "POST",
            "/",
            "application/x-www-form-urlencoded",
            "Param1=value1",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        ),
    ];
    for (method, target, content_type, body, expected) in vectors {
        let uri: Uri = target.parse().unwrap();
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), "example.amazonaws.com".into()),
            ("x-amz-date".into(), "20150830T123600Z".into()),
        ];
        if !content_type.is_empty() {
            headers.push(("content-type".into(), content_type.into()));
        }
        let request = ecr::sigv4::Request {
            method,
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers: &headers,
            body: body.as_bytes(),
        };
        let scope = ecr::sigv4::Scope {
            amz_date: "20150830T123600Z",
            region: "us-east-1",
            service: "service",
        };
        assert_eq!(
            ecr::sigv4::signature(&request, &scope, secret),
            expected,
            "{target}"
        );
    }
    // The fake's own check, on a request signed for it now and then altered.
    let now = 1_763_000_000;
    let amz_date = ecr::sigv4::amz_date(now * 1000);
    let headers = vec![
        (
            "content-type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
        ("host".to_string(), "127.0.0.1:9".to_string()),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    let body = b"{}";
    let request = ecr::sigv4::Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let scope = ecr::sigv4::Scope {
        amz_date: &amz_date,
        region: aws::REGION,
        service: "ecr",
    };
    let authorization =
        ecr::sigv4::authorization(&request, &scope, aws::ACCESS_KEY_ID, aws::SECRET_ACCESS_KEY);
    let mut map = HeaderMap::new();
    for (name, value) in &headers {
        map.insert(
            name.parse::<axum::http::HeaderName>().unwrap(),
            value.parse().unwrap(),
        );
    }
    map.insert("authorization", authorization.parse().unwrap());
    let uri: Uri = "/".parse().unwrap();
    assert!(aws::verify("POST", &uri, &map, body, now).is_ok());
    assert!(
        aws::verify("POST", &uri, &map, b"{ }", now).is_err(),
        "the body is signed"
    );
    assert!(
        aws::verify("POST", &uri, &map, body, now + 16 * 60).is_err(),
        "stale dates are refused"
    );
    map.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
    assert!(aws::verify("POST", &uri, &map, body, now).is_err());
}

fn acr_settings(registry: &str, azure: &FakeAzure, secret: &str) -> Value {
    json!({
        "adapter": "acr",
        "settings": {
            "registry": azure::LOGIN_SERVER, "namespace": "flows",
            "tenant-id": azure::TENANT, "client-id": azure::CLIENT_ID,
            "endpoints": {"registry": format!("http://{registry}"), "authority": azure.url, "token-server": azure.url}
        },
        "secrets": {"client-secret": secret},
        "allowed-hosts": [host_of(&azure.url)]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acr_exchanges_a_service_principal_token_or_uses_basic_credentials() {
    let (issuer, realm, registry) = token_registry().await;
    let azure = FakeAzure::start(&issuer).await;
    let server = Releaser::start().await;

    // Half a service principal, or both ways at once, is refused by field.
    let mut half = acr_settings(&registry.address, &azure, azure::CLIENT_SECRET);
    half["settings"]
        .as_object_mut()
        .unwrap()
        .remove("tenant-id");
    refused_at(
        &server,
        half,
        "/settings/tenant-id",
        &[azure::CLIENT_SECRET],
    )
    .await;
    let mut both = acr_settings(&registry.address, &azure, azure::CLIENT_SECRET);
    both["settings"]["username"] = json!("acmeflows");
    refused_at(&server, both, "/settings/username", &[azure::CLIENT_SECRET]).await;
    let mut bad_name = acr_settings(&registry.address, &azure, azure::CLIENT_SECRET);
    bad_name["settings"]["registry"] = json!("acme-flows.example.com");
    refused_at(
        &server,
        bad_name,
        "/settings/registry",
        &[azure::CLIENT_SECRET],
    )
    .await;

    // Entra's client credentials, ACR's exchange, then a token scoped to
    // the push (the fake checks grant types, service, tenant and scopes).
    let (status, body) = put_registry(
        &server,
        acr_settings(&registry.address, &azure, azure::CLIENT_SECRET),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (reference, _) = ready(&server.release("orders").await);
    assert_eq!(reference, format!("{}/flows/orders:v1", registry.address));
    assert!(
        azure.refusals.lock().unwrap().is_empty(),
        "{:?}",
        azure.refusals
    );
    assert!(
        azure
            .scopes
            .lock()
            .unwrap()
            .contains(&"repository:flows/orders:pull,push".to_string())
    );

    // The refresh token is kept; shared layers are mounted with pull asked
    // on their source.
    let release = server.release("billing").await;
    ready(&release);
    assert_eq!(azure.entra_tokens.load(Ordering::SeqCst), 1);
    assert_eq!(release["image"]["push"]["mounted"], 2, "{release}");
    assert!(
        azure
            .scopes
            .lock()
            .unwrap()
            .contains(&"repository:flows/orders:pull".to_string())
    );

    // A revoked refresh token: the adapter starts over once.
    azure.revoke_refresh_tokens();
    ready(&server.release("shipping").await);
    assert_eq!(azure.entra_tokens.load(Ordering::SeqCst), 2);

    // A wrong client secret: Entra's reason, no secret.
    let (status, _) = put_registry(
        &server,
        acr_settings(&registry.address, &azure, "Xy8Q~wrong~secret"),
    )
    .await;
    assert_eq!(status, 200);
    let release = server.release("orders").await;
    let error = failed(&release);
    assert!(error.contains("AADSTS7000215"), "{error}");
    assert!(!release.to_string().contains("wrong~secret"));

    // Admin (basic) credentials go through the registry's own challenge.
    issuer.add_user("acmeflows", "admin-password");
    let basic = json!({
        "adapter": "acr",
        "settings": {"registry": azure::LOGIN_SERVER, "namespace": "admin", "username": "acmeflows",
                     "endpoints": {"registry": format!("http://{}", registry.address)}},
        "secrets": {"password": "admin-password"},
        "allowed-hosts": [host_of(&realm)]
    });
    let (status, body) = put_registry(&server, basic).await;
    assert_eq!(status, 200, "{body}");
    let (reference, _) = ready(&server.release("orders").await);
    assert_eq!(reference, format!("{}/admin/orders:v1", registry.address));
}

fn ocir_settings(ocir: &FakeOcir, username: &str, token: &str) -> Value {
    json!({
        "adapter": "ocir",
        "settings": {"region": "iad", "namespace": oracle::NAMESPACE, "username": username, "prefix": "flows",
                     "endpoints": {"registry": format!("http://{}", ocir.registry())}},
        "secrets": {"auth-token": token},
        "allowed-hosts": [host_of(&ocir.url)]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocir_checks_user_names_and_reports_tenancies_that_do_not_create_repositories() {
    let issuer = TokenIssuer::new(&[]);
    let ocir = FakeOcir::start_token_service(&issuer).await;
    let registry = TestRegistry::token(&ocir.realm(), SERVICE, ISSUER, &issuer.cert_pem);
    ocir.start_front(&format!("http://{}", registry.address))
        .await;
    let server = Releaser::start().await;
    let token = "C0rr3ct+auth(token)";
    let user = format!("{}/alice@acme.com", oracle::NAMESPACE);
    let federated = format!(
        "{}/oracleidentitycloudservice/bob@acme.com",
        oracle::NAMESPACE
    );
    issuer.add_user(&user, token);
    issuer.add_user(&federated, token);
    issuer.add_user("alice@acme.com", token);

    // A user name without the tenancy namespace is refused by field.
    let message = refused_at(
        &server,
        ocir_settings(&ocir, "alice@acme.com", token),
        "/settings/username",
        &[token],
    )
    .await;
    assert!(message.contains(oracle::NAMESPACE), "{message}");
    let mut no_token = ocir_settings(&ocir, &user, token);
    no_token["secrets"] = json!({});
    refused_at(&server, no_token, "/secrets/auth-token", &[]).await;

    // A tenancy that creates repositories on push takes the first push.
    let (status, body) = put_registry(&server, ocir_settings(&ocir, &user, token)).await;
    assert_eq!(status, 200, "{body}");
    let (reference, _) = ready(&server.release("orders").await);
    assert_eq!(
        reference,
        format!("{}/{}/flows/orders:v1", ocir.registry(), oracle::NAMESPACE)
    );

    // Federated users push too.
    let (status, _) = put_registry(&server, ocir_settings(&ocir, &federated, token)).await;
    assert_eq!(status, 200);
    ready(&server.release("billing").await);
    assert!(ocir.refused_names.lock().unwrap().is_empty());

    // One that does not: exactly that, before any blob was sent.
    ocir.creates_on_push.store(false, Ordering::SeqCst);
    let error = failed(&server.release("shipping").await);
    assert!(
        error.contains("does not exist and the tenancy does not create repositories on first push"),
        "{error}"
    );
    // An existing repository still takes pushes.
    ready(&server.release_version("orders", 1).await);

    // A wrong auth token is refused by the token service, with a hint.
    let (status, _) = put_registry(&server, ocir_settings(&ocir, &user, "wrong-token")).await;
    assert_eq!(status, 200);
    let release = server.release("billing").await;
    let error = failed(&release);
    assert!(error.contains("auth token"), "{error}");
    assert!(!release.to_string().contains("wrong-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_the_registry_under_load_keeps_every_release_whole() {
    let (issuer, realm, registry) = token_registry().await;
    let google = FakeGoogle::start(&issuer).await;
    google
        .repositories
        .lock()
        .unwrap()
        .insert("projects/acme-flows/locations/europe-west1/repositories/flows".into());
    let ecr = FakeEcr::start(&issuer, &format!("http://{}", registry.address)).await;
    let server = Releaser::start().await;
    let gcr = gcr_settings(
        &registry.address,
        &google,
        &realm,
        &google::key_file(google::PRIVATE_KEY),
    );
    let ecr_change = ecr_settings(&ecr, json!({}));
    let (status, body) = put_registry(&server, gcr.clone()).await;
    assert_eq!(status, 200, "{body}");

    // Releases keep coming while the registry flips between the two.
    let integrations = ["orders", "billing", "shipping"];
    let mut ids = Vec::new();
    for round in 0..4 {
        for integration in integrations {
            ids.push(server.start_release(integration, 1).await);
        }
        let next = if round % 2 == 0 { &ecr_change } else { &gcr };
        let (status, body) = put_registry(&server, next.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    issuer.add_user("skopeo", "skopeo-password");
    let gcr_prefix = format!("{}/acme-flows/flows/", registry.address);
    let ecr_prefix = format!("{}/flows/", ecr.registry());
    // Inspected once all are settled: the CNCF registry's filesystem store
    // can answer 500 to a read racing a push of the same blobs.
    let mut settled = Vec::new();
    for id in ids {
        settled.push(server.settled(id).await);
    }
    for release in settled {
        let (reference, digest) = ready(&release);
        // Each release used one whole adapter: its naming and its registry.
        let repository = if let Some(rest) = reference.strip_prefix(&gcr_prefix) {
            format!("acme-flows/flows/{}", rest.split(':').next().unwrap())
        } else if let Some(rest) = reference.strip_prefix(&ecr_prefix) {
            format!("flows/{}", rest.split(':').next().unwrap())
        } else {
            panic!("{reference} is neither adapter's");
        };
        let inspected = skopeo_inspect(
            &format!("{}/{repository}@{digest}", registry.address),
            Some("skopeo:skopeo-password"),
        )
        .unwrap();
        assert_eq!(inspected["Digest"], digest);
    }

    // Every change is recorded: who, when, from what to what, secrets by name.
    let (status, changes) = server
        .call("GET", "/api/v1/registry/changes", Value::Null)
        .await;
    assert_eq!(status, 200);
    let changes = changes.as_array().unwrap();
    assert_eq!(changes.len(), 5, "{changes:?}");
    assert_eq!(changes[0]["from"], Value::Null);
    assert_eq!(changes[0]["to"]["adapter"], "gcr");
    assert_eq!(changes[1]["from"]["adapter"], "gcr");
    assert_eq!(changes[1]["to"]["adapter"], "ecr");
    assert!(
        changes[1]["to"]["resolved"]
            .as_str()
            .unwrap()
            .starts_with("ecr@1.")
    );
    assert_eq!(changes[1]["to"]["secrets"], json!(["secret-access-key"]));
    assert_eq!(changes[4]["from"]["adapter"], "ecr");
    assert_eq!(changes[4]["to"]["adapter"], "gcr");
    for change in changes {
        assert_eq!(change["by"], "admin", "{change}");
        assert!(change["at-ms"].as_u64().unwrap() > 0);
    }
    let text = Value::Array(changes.clone()).to_string();
    assert!(!text.contains(aws::SECRET_ACCESS_KEY) && !text.contains("PRIVATE KEY"));
}
