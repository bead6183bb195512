//! Strings in JSON and YAML documents, read as the JSON data model reads
//! them: YAML's plain `false` or `12` is a boolean or a number, not the
//! text `"false"` or `"12"`, so a field that holds text refuses it in YAML
//! as it does in JSON (quote it: `'12'`).

use std::fmt;

use serde::Deserializer;
use serde::de::{Error, Visitor};

/// Deserializes a string, and nothing else.
pub fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_any(Text)
}

/// Deserializes an optional string (`null` is none), and nothing else.
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_option(Optional)
}

struct Text;

impl Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<String, E> {
        Ok(text.to_string())
    }

    fn visit_string<E: Error>(self, text: String) -> Result<String, E> {
        Ok(text)
    }
}

struct Optional;

impl<'de> Visitor<'de> for Optional {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_none<E: Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<String>, D::Error> {
        string(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Named {
        #[serde(deserialize_with = "super::string")]
        name: String,
        #[serde(default, deserialize_with = "super::optional")]
        kind: Option<String>,
    }

    #[test]
    fn yaml_scalars_that_are_not_text_are_refused() {
        for yaml in ["name: false", "name: 12", "name: x\nkind: true", "name: ~"] {
            let err = serde_norway::from_str::<Named>(yaml).unwrap_err();
            assert!(
                err.to_string().contains("expected a string"),
                "{yaml}: {err}"
            );
        }
        let named: Named = serde_norway::from_str("name: '12'\nkind: ~").unwrap();
        assert_eq!((named.name.as_str(), named.kind), ("12", None));
        let named: Named = serde_json::from_str(r#"{"name": "a", "kind": "b"}"#).unwrap();
        assert_eq!(named.kind.as_deref(), Some("b"));
        assert!(serde_json::from_str::<Named>(r#"{"name": 1}"#).is_err());
    }
}
