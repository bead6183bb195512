//! Artifacts of any kind pushed to the CNCF distribution registry, read
//! back as a client would, and deleted.

use std::collections::BTreeMap;

use slipway_oci::artifact::{Artifact, Blob, INDEX, Index, MANIFEST, Platform};
use slipway_oci::layer::Files;
use slipway_oci::push::{CredentialSource, Credentials, Deleted, Push, PushCredentials, PushError};
use slipway_test_support::registry::TestRegistry;

const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const HELM_CHART: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// The same credentials every time.
struct Fixed(Credentials);

impl CredentialSource for Fixed {
    async fn fetch(&self) -> Result<PushCredentials, PushError> {
        Ok(PushCredentials {
            credentials: self.0.clone(),
            expires_at_ms: None,
        })
    }
}

fn basic(password: &str) -> Fixed {
    Fixed(Credentials::Basic {
        username: "ci".into(),
        password: password.into(),
    })
}

/// A chart as Helm pushes one: its config, one tgz layer, a title.
fn chart(version: &str) -> Artifact {
    let mut files = Files::default();
    files.add(
        "shop/Chart.yaml",
        0o644,
        format!("apiVersion: v2\nname: shop\nversion: {version}\n").into_bytes(),
    );
    let config = Blob::new(
        HELM_CONFIG,
        format!(r#"{{"apiVersion":"v2","name":"shop","version":"{version}"}}"#).into_bytes(),
    );
    let annotations = BTreeMap::from([(
        "org.opencontainers.image.title".to_string(),
        "shop".to_string(),
    )]);
    Artifact::new(
        config,
        vec![files.layer(0).to_blob(HELM_CHART)],
        &annotations,
    )
}

async fn get(
    http: &reqwest::Client,
    registry: &TestRegistry,
    path: &str,
    accept: &str,
) -> reqwest::Response {
    http.get(format!("http://{}/v2/{path}", registry.address))
        .basic_auth("ci", Some("secret"))
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_chart_goes_to_the_registry_with_its_own_media_types() {
    let registry = TestRegistry::htpasswd("ci", "secret");
    let http = reqwest::Client::new();
    let artifact = chart("1.0.0");
    let mut push = Push::new(&http, &registry.address, "charts/shop", basic("secret"));
    let (digest, pushed) = push
        .artifact(&artifact, "1.0.0", |_| None, |_| {})
        .await
        .unwrap();
    assert_eq!(digest, artifact.manifest.digest);
    assert_eq!((pushed.uploaded, pushed.present), (2, 0));

    let answer = get(&http, &registry, "charts/shop/manifests/1.0.0", MANIFEST).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["docker-content-digest"], digest.as_str());
    let manifest: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(manifest["config"]["mediaType"], HELM_CONFIG);
    assert_eq!(manifest["layers"][0]["mediaType"], HELM_CHART);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "shop"
    );
    let config = get(
        &http,
        &registry,
        &format!("charts/shop/blobs/{}", artifact.config.digest),
        "*/*",
    )
    .await;
    assert_eq!(config.bytes().await.unwrap(), &artifact.config.bytes[..]);

    // Pushed again, nothing is uploaded; a new version uploads what changed.
    let (_, again) = push
        .artifact(&artifact, "1.0.0", |_| None, |_| {})
        .await
        .unwrap();
    assert_eq!((again.uploaded, again.present), (0, 2));
    let mut seen = Vec::new();
    let (_, next) = push
        .artifact(
            &chart("1.0.1"),
            "1.0.1",
            |_| None,
            |b| seen.push(b.digest.clone()),
        )
        .await
        .unwrap();
    assert_eq!((next.uploaded, seen.len()), (2, 2));

    assert_eq!(
        push.delete_manifest(&digest).await.unwrap(),
        Deleted::Deleted
    );
    let gone = get(
        &http,
        &registry,
        &format!("charts/shop/manifests/{digest}"),
        MANIFEST,
    )
    .await;
    assert_eq!(gone.status(), 404);
    assert_eq!(
        push.delete_manifest(&digest).await.unwrap(),
        Deleted::Absent
    );
}

#[tokio::test]
async fn an_index_names_artifacts_pushed_before_it() {
    let registry = TestRegistry::htpasswd("ci", "secret");
    let http = reqwest::Client::new();
    let artifact = chart("2.0.0");
    let mut push = Push::new(&http, &registry.address, "multi", basic("secret"));
    let (digest, _) = push
        .artifact(&artifact, &artifact.manifest.digest, |_| None, |_| {})
        .await
        .unwrap();
    let index = Index::new(&[(
        &artifact,
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
        },
    )]);
    let index_digest = push.manifest("latest", &index.manifest).await.unwrap();
    assert_eq!(index_digest, index.manifest.digest);
    let answer = get(&http, &registry, "multi/manifests/latest", INDEX).await;
    assert_eq!(answer.headers()["content-type"], INDEX);
    let value: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(value["manifests"][0]["digest"], digest.as_str());
}

#[tokio::test]
async fn refused_credentials_fail_the_push_and_appear_in_no_error() {
    let registry = TestRegistry::htpasswd("ci", "secret");
    let http = reqwest::Client::new();
    let mut push = Push::new(
        &http,
        &registry.address,
        "charts/shop",
        basic("wrong-password"),
    );
    let error = push
        .artifact(&chart("1.0.0"), "1.0.0", |_| None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, PushError::Unauthorized(_)), "{error:?}");
    assert!(!error.to_string().contains("wrong-password"), "{error}");
}
