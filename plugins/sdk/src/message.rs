//! Conveniences on [`Message`]: JSON bodies, headers and attributes.

use serde::{Serialize, de::DeserializeOwned};

use crate::Message;

impl Message {
    /// A message with a JSON body and a `content-type: application/json` header.
    pub fn json<T: Serialize>(value: &T) -> Self {
        let mut message = Message {
            body: Vec::new(),
            headers: Vec::new(),
            attributes: Vec::new(),
        };
        message.set_json(value);
        message
    }

    /// Parses the body as JSON.
    pub fn body_json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Replaces the body with `value` as JSON and sets the content type.
    pub fn set_json<T: Serialize>(&mut self, value: &T) {
        self.body = serde_json::to_vec(value).expect("a serializable value");
        self.set_header("content-type", "application/json");
    }

    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets a header, replacing every header of that name.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// An attribute by exact name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets an attribute, replacing its previous value.
    pub fn set_attribute(&mut self, name: &str, value: &str) {
        self.attributes.retain(|(k, _)| k != name);
        self.attributes.push((name.to_string(), value.to_string()));
    }
}
