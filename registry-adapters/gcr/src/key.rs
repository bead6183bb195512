//! A service account's JSON key and the JWT assertion it signs (RS256,
//! RFC 7523), without ever quoting the key in an error.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde::Deserialize;
use sha2::Sha256;
use slipway_sdk::serde_json::{self, json};
use slipway_sdk::{Diagnostic, host};

use crate::SCOPE;

const SECRET: &str = "/secrets/service-account-key";

/// The fields of a key file the exchange needs.
#[derive(Deserialize)]
pub struct ServiceAccountKey {
    /// Must be `service_account`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The account, e.g. `pusher@project.iam.gserviceaccount.com`.
    pub client_email: String,
    /// The key's id, sent as the JWT's `kid`.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// The PKCS#8 PEM private key.
    pub private_key: String,
    /// Where the key says tokens come from.
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl ServiceAccountKey {
    /// The granted `service-account-key` secret, parsed.
    pub fn from_secret() -> Result<ServiceAccountKey, Diagnostic> {
        let text = host::required_secret(
            "service-account-key",
            "grant the service account's JSON key as `service-account-key`, or an `access-token`",
        )?;
        Self::parse(&text)
    }

    /// Parses a key file; errors name fields, never values.
    pub fn parse(text: &str) -> Result<ServiceAccountKey, Diagnostic> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            Diagnostic::at(
                SECRET,
                format!(
                    "is not JSON (line {}, column {}); use the key file Google issued",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        for field in ["type", "client_email", "private_key"] {
            if !value.get(field).is_some_and(|v| v.is_string()) {
                return Err(Diagnostic::at(
                    format!("{SECRET}/{field}"),
                    "is missing or not a string; use the key file Google issued",
                ));
            }
        }
        let key: ServiceAccountKey = serde_json::from_value(value).map_err(|_| {
            Diagnostic::at(
                SECRET,
                "has fields of the wrong type; use the key file Google issued",
            )
        })?;
        if key.kind != "service_account" {
            return Err(Diagnostic::at(
                format!("{SECRET}/type"),
                "must be `service_account`",
            ));
        }
        Ok(key)
    }

    /// Checks that `private_key` is a PKCS#8 PEM RSA key by its structure
    /// alone: cheap enough for every call (the SDK checks settings on each),
    /// unlike building the key, which [`jwt_assertion`] does.
    pub fn check_private_key(&self) -> Result<(), Diagnostic> {
        let problem = || {
            Diagnostic::at(
                format!("{SECRET}/private_key"),
                "is not a PKCS#8 PEM RSA private key",
            )
        };
        let (label, document) =
            rsa::pkcs8::SecretDocument::from_pem(&self.private_key).map_err(|_| problem())?;
        let info =
            rsa::pkcs8::PrivateKeyInfo::try_from(document.as_bytes()).map_err(|_| problem())?;
        let rsa_key = label == "PRIVATE KEY"
            && info.algorithm.oid == rsa::pkcs1::ALGORITHM_OID
            && rsa::pkcs1::RsaPrivateKey::try_from(info.private_key).is_ok();
        rsa_key.then_some(()).ok_or_else(problem)
    }

    fn signing_key(&self) -> Result<SigningKey<Sha256>, Diagnostic> {
        let key = RsaPrivateKey::from_pkcs8_pem(&self.private_key).map_err(|_| {
            Diagnostic::at(
                format!("{SECRET}/private_key"),
                "is not a PKCS#8 PEM RSA private key",
            )
        })?;
        Ok(SigningKey::<Sha256>::new(key))
    }
}

/// The signed JWT that asks `token_url` for an access token, issued at
/// `now_s` (seconds since the epoch) and good for an hour.
pub fn jwt_assertion(
    key: &ServiceAccountKey,
    token_url: &str,
    now_s: u64,
) -> Result<String, Diagnostic> {
    let signer = key.signing_key()?;
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(id) = &key.private_key_id {
        header["kid"] = json!(id);
    }
    let claims = json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": token_url,
        "iat": now_s,
        "exp": now_s + 3600,
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer.sign(signed.as_bytes()).to_bytes();
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_keys_are_named_without_their_content() {
        let problem = ServiceAccountKey::parse("{\"type\": \"service_account\", oops")
            .err()
            .unwrap();
        assert_eq!(problem.path, SECRET);
        assert!(!problem.message.contains("oops"));
        let problem =
            ServiceAccountKey::parse(r#"{"type": "service_account", "client_email": "a@b"}"#)
                .err()
                .unwrap();
        assert_eq!(problem.path, "/secrets/service-account-key/private_key");
        let key = ServiceAccountKey::parse(
            r#"{"type": "service_account", "client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nsecret-bits\n-----END PRIVATE KEY-----\n"}"#,
        )
        .unwrap();
        for problem in [
            key.check_private_key().err().unwrap(),
            jwt_assertion(&key, "https://t", 0).err().unwrap(),
        ] {
            assert_eq!(problem.path, "/secrets/service-account-key/private_key");
            assert!(!problem.message.contains("secret-bits"));
        }
    }
}
