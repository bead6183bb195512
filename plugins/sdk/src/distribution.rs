//! The OCI distribution protocol as registry adapters need it: naming rules,
//! the `WWW-Authenticate` challenge, and the token handshake of the
//! distribution token spec, all over the host's HTTP import.

use base64::Engine as _;
use serde::Deserialize;

use crate::http::{self, Request};
use crate::registry::{Credentials, Error, Image, PushCredentials};

/// Tokens that do not say how long they last are good for 60 s (token spec).
const DEFAULT_TOKEN_SECONDS: u64 = 60;

/// Checks a repository name against the distribution spec:
/// `/`-separated components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, at most 255 bytes.
pub fn check_repository(name: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::InvalidName(format!("repository `{name}` {why}")));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 255 {
        return bad("is longer than 255 characters");
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return bad(&format!(
                "has the component `{component}`: use lowercase letters and digits, \
                 separated by one `.`, one or two `_`, or dashes"
            ));
        }
    }
    Ok(())
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), Error> {
    let mut bytes = tag.bytes();
    let ok = tag.len() <= 128
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(format!(
            "tag `{tag}`: use up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
        )))
    }
}

/// The image `repository:tag` at the registry of `url` (a URL setting, see
/// [`split_url`]), once both names pass the spec's rules.
pub fn image(url: &str, repository: String, tag: &str) -> Result<Image, Error> {
    let (_, registry) =
        split_url(url).ok_or_else(|| Error::Other(format!("`{url}` is not a registry URL")))?;
    check_repository(&repository)?;
    check_tag(tag)?;
    Ok(Image {
        registry,
        repository,
        tag: tag.into(),
    })
}

/// `Basic <base64(user:password)>`.
pub fn basic_header(username: &str, password: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

/// The `Authorization` value for `credentials`; `None` when anonymous.
pub fn authorization_header(credentials: &Credentials) -> Option<String> {
    match credentials {
        Credentials::Anonymous => None,
        Credentials::Basic((username, password)) => Some(basic_header(username, password)),
        Credentials::Bearer(token) => Some(format!("Bearer {token}")),
    }
}

/// How a registry asks to be authenticated (its `WWW-Authenticate` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No credentials needed.
    None,
    /// HTTP basic authentication.
    Basic,
    /// A token from `realm`, for `service`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The service the token is for.
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` value; `None` when it is neither scheme.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parameters(rest);
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
        })
    }
}

/// `key="value", key=value` pairs; commas inside quotes are kept.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((key, value.to_string()));
        rest = next.trim_start().trim_start_matches(',');
    }
    out
}

/// A request with headers, through the host.
fn send(method: &str, url: &str, headers: Vec<(String, String)>) -> Result<http::Response, Error> {
    http::send(&Request {
        method: method.into(),
        url: url.into(),
        headers,
        body: Vec::new(),
        timeout_ms: Some(30_000),
    })
    .map_err(|e| Error::Unavailable(format!("{url}: {}", describe_http_error(&e))))
}

fn describe_http_error(error: &http::Error) -> String {
    match error {
        http::Error::Denied(m) => format!("not allowed: {m}"),
        http::Error::InvalidRequest(m) => format!("invalid request: {m}"),
        http::Error::Transport(m) => m.clone(),
        http::Error::Timeout => "timed out".into(),
    }
}

fn header<'a>(response: &'a http::Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Asks `{base}/v2/` how it wants to be authenticated.
pub fn challenge(base: &str) -> Result<Challenge, Error> {
    let url = format!("{base}/v2/");
    let response = send("GET", &url, Vec::new())?;
    match response.status {
        200 => Ok(Challenge::None),
        401 => header(&response, "www-authenticate")
            .and_then(Challenge::parse)
            .ok_or_else(|| {
                Error::Unavailable(format!(
                    "{url} answered 401 without a Basic or Bearer challenge"
                ))
            }),
        status => Err(Error::Unavailable(format!("{url} answered {status}"))),
    }
}

/// Credentials an adapter proved: a user name and its password or token.
#[derive(Clone)]
pub struct Login {
    /// User name.
    pub username: String,
    /// Password or token (never logged).
    pub password: String,
}

/// Push credentials for `repository` (plus pull on `mount_from`) at the
/// registry `base` (`https://host[:port]`), following its challenge:
/// anonymous, basic (checked against `/v2/`), or a token from its realm.
pub fn push_credentials(
    base: &str,
    login: Option<&Login>,
    repository: &str,
    mount_from: &[String],
) -> Result<PushCredentials, Error> {
    match challenge(base)? {
        Challenge::None => Ok(PushCredentials {
            credentials: Credentials::Anonymous,
            expires_at_ms: None,
        }),
        Challenge::Basic => {
            let login = login.ok_or_else(|| {
                Error::Unauthorized(format!(
                    "{base} asks for a user name and password; none are configured"
                ))
            })?;
            let url = format!("{base}/v2/");
            let authorization = basic_header(&login.username, &login.password);
            let response = send("GET", &url, vec![("authorization".into(), authorization)])?;
            match response.status {
                200 => Ok(PushCredentials {
                    credentials: Credentials::Basic((
                        login.username.clone(),
                        login.password.clone(),
                    )),
                    expires_at_ms: None,
                }),
                401 | 403 => Err(Error::Unauthorized(format!(
                    "{base} refused the password of user `{}`",
                    login.username
                ))),
                status => Err(Error::Unavailable(format!("{url} answered {status}"))),
            }
        }
        Challenge::Bearer { realm, service } => {
            let mut scopes = vec![format!("repository:{repository}:pull,push")];
            scopes.extend(mount_from.iter().map(|r| format!("repository:{r}:pull")));
            token(&realm, service.as_deref(), &scopes, login)
        }
    }
}

/// A token from `realm` for `scopes` (token spec: GET with `service` and `scope`).
pub fn token(
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    login: Option<&Login>,
) -> Result<PushCredentials, Error> {
    let mut query: Vec<String> = Vec::new();
    if let Some(service) = service {
        query.push(format!("service={}", encode(service)));
    }
    query.extend(scopes.iter().map(|s| format!("scope={}", encode(s))));
    let separator = if realm.contains('?') { '&' } else { '?' };
    let url = format!("{realm}{separator}{}", query.join("&"));
    let headers = login
        .map(|l| {
            vec![(
                "authorization".into(),
                basic_header(&l.username, &l.password),
            )]
        })
        .unwrap_or_default();
    let response = send("GET", &url, headers)?;
    let who = login.map_or("anonymous access".to_string(), |l| {
        format!("the password of user `{}`", l.username)
    });
    match response.status {
        200 => {}
        401 | 403 => {
            return Err(Error::Unauthorized(format!(
                "the token service {realm} refused {who}"
            )));
        }
        status => {
            return Err(Error::Unavailable(format!(
                "the token service {realm} answered {status}"
            )));
        }
    }
    #[derive(Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let body: TokenResponse = serde_json::from_slice(&response.body)
        .map_err(|e| Error::Unavailable(format!("the token service {realm} sent no token: {e}")))?;
    let token = body
        .token
        .or(body.access_token)
        .ok_or_else(|| Error::Unavailable(format!("the token service {realm} sent no token")))?;
    let seconds = body.expires_in.unwrap_or(DEFAULT_TOKEN_SECONDS);
    Ok(PushCredentials {
        credentials: Credentials::Bearer(token),
        expires_at_ms: Some(crate::host::now_ms() + seconds * 1000),
    })
}

/// Percent-encodes a query or form value (RFC 3986 unreserved kept).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a registry URL setting must be, as [`url_setting`] says.
pub const URL_RULE: &str = "must be http:// or https:// followed by host[:port], with no path";

/// A registry URL setting at `pointer` split as [`split_url`] does, or the
/// problem at `pointer`.
pub fn url_setting(url: &str, pointer: &str) -> Result<(String, String), crate::Diagnostic> {
    split_url(url).ok_or_else(|| crate::Diagnostic::at(pointer, URL_RULE))
}

/// Splits a registry URL setting into its base (`scheme://host[:port]`) and
/// host (`host[:port]`); `None` unless it is `http` or `https` with no path.
pub fn split_url(url: &str) -> Option<(String, String)> {
    let url = url.trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    ok.then(|| (url.to_string(), rest.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_setting_is_a_scheme_and_an_authority() {
        assert_eq!(
            url_setting("https://Registry.example:5000/", "/url").unwrap(),
            (
                "https://Registry.example:5000".into(),
                "registry.example:5000".into()
            )
        );
        for bad in ["ftp://x", "https://x/path", "https://", "x.example"] {
            let problem = url_setting(bad, "/endpoints/api").unwrap_err();
            assert_eq!(
                (problem.path.as_str(), problem.message.as_str()),
                ("/endpoints/api", URL_RULE),
                "{bad}"
            );
        }
    }

    #[test]
    fn repository_names_follow_the_spec() {
        for good in ["orders", "flows/orders", "a.b/c_d/e__f/g---h", "0ab"] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "", "Orders", "a//b", "-a", "a-", "a..b", "a___b", "/a", "a b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad:?}");
        }
        assert!(check_repository(&"a".repeat(256)).is_err());
        assert!(check_tag("v1.2-rc_3").is_ok());
        assert!(check_tag(".v1").is_err());
        assert!(check_tag(&"a".repeat(129)).is_err());
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry".into())
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
    }

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://127.0.0.1:5000/"),
            Some(("http://127.0.0.1:5000".into(), "127.0.0.1:5000".into()))
        );
        assert_eq!(split_url("ftp://x"), None);
        assert_eq!(split_url("https://x/path"), None);
    }
}
