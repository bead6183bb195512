//! Typed configs and settings: JSON text to a serde type, with errors located by JSON pointer.

use serde::de::DeserializeOwned;

use crate::Diagnostic;

/// Parses `json` into `T`; on failure, one diagnostic pointing at the field at fault.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, Diagnostic> {
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let mut path = pointer(err.path());
        let inner = err.inner();
        let message = inner.to_string();
        // serde names a missing field but reports the parent's path.
        if let Some(field) = named_field(&message) {
            path.push('/');
            path.push_str(&escape(field));
        }
        let message = match message.rfind(" at line ") {
            Some(at) if !inner.is_io() => message[..at].to_string(),
            _ => message,
        };
        Diagnostic::at(path, message)
    })
}

/// What a `validate` or `validate-settings` export answers: `text` parsed
/// as `T`, then checked by `validate`.
pub fn check<T: DeserializeOwned>(
    text: &str,
    validate: impl FnOnce(&T) -> Vec<Diagnostic>,
) -> Vec<Diagnostic> {
    match parse::<T>(text) {
        Ok(settings) => validate(&settings),
        Err(problem) => vec![problem],
    }
}

/// The plugin's settings from the host, parsed and checked by `validate`.
pub fn settings<T: DeserializeOwned>(
    validate: impl FnOnce(&T) -> Vec<Diagnostic>,
) -> Result<T, Vec<Diagnostic>> {
    let settings = parse::<T>(&crate::host::settings()).map_err(|d| vec![d])?;
    let problems = validate(&settings);
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(problems)
    }
}

/// The JSON pointer of a serde path; `""` for the document itself.
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                out.push('/');
                out.push_str(&index.to_string());
            }
            Segment::Map { key } => {
                out.push('/');
                out.push_str(&escape(key));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

fn named_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Escapes one JSON pointer token (RFC 6901).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Config {
        url: String,
        headers: Vec<Header>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Header {
        name: String,
        value: String,
    }

    #[test]
    fn wrong_type_points_at_the_field() {
        let err = parse::<Config>(r#"{"url": 3, "headers": []}"#).unwrap_err();
        assert_eq!(err.path, "/url");
        assert_eq!(err.message, "invalid type: integer `3`, expected a string");
    }

    #[test]
    fn missing_field_points_at_the_missing_field() {
        let err = parse::<Config>(r#"{"url": "x", "headers": [{"name": "a"}]}"#).unwrap_err();
        assert_eq!(err.path, "/headers/0/value");
        assert_eq!(err.message, "missing field `value`");
    }

    #[test]
    fn unknown_field_points_at_the_unknown_field() {
        let err = parse::<Config>(r#"{"url": "x", "headers": [], "a/b": 1}"#).unwrap_err();
        assert_eq!(err.path, "/a~1b");
        assert!(err.message.starts_with("unknown field `a/b`"));
    }

    #[test]
    fn syntax_error_points_at_the_document() {
        let err = parse::<Config>("{").unwrap_err();
        assert_eq!(err.path, "");
        assert_eq!(err.message, "EOF while parsing an object");
    }
}
