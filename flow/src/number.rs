//! Numbers in JSON and YAML documents, read as the JSON data model reads
//! them. JSON Schema counts a number with no fraction as an integer, so
//! `2.0` is the integer `2` here too; and an integer past 64 bits, which
//! JSON reads as a float, is a float when YAML carries it too.

use std::fmt;

use serde::de::{Error, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Deserializes a `u32` written as `2` or as `2.0`.
pub fn u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    deserializer.deserialize_any(WholeU32)
}

struct WholeU32;

impl Visitor<'_> for WholeU32 {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number from 0 to 4294967295")
    }

    fn visit_u64<E: Error>(self, n: u64) -> Result<u32, E> {
        u32::try_from(n).map_err(|_| E::invalid_value(Unexpected::Unsigned(n), &self))
    }

    fn visit_i64<E: Error>(self, n: i64) -> Result<u32, E> {
        u32::try_from(n).map_err(|_| E::invalid_value(Unexpected::Signed(n), &self))
    }

    fn visit_f64<E: Error>(self, n: f64) -> Result<u32, E> {
        if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) {
            Ok(n as u32)
        } else {
            Err(E::invalid_value(Unexpected::Float(n), &self))
        }
    }
}

/// Deserializes any JSON value, from JSON or YAML alike: integers past
/// 64 bits become floats, as in JSON, instead of failing in YAML.
pub fn json<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Option::<Json>::deserialize(deserializer).map(|json| json.map(|j| j.0))
}

struct Json(Value);

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(AnyJson).map(Json)
    }
}

struct AnyJson;

impl<'de> Visitor<'de> for AnyJson {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: Error>(self, n: i64) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_u64<E: Error>(self, n: u64) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_i128<E: Error>(self, n: i128) -> Result<Value, E> {
        self.visit_f64(n as f64)
    }

    fn visit_u128<E: Error>(self, n: u128) -> Result<Value, E> {
        self.visit_f64(n as f64)
    }

    fn visit_f64<E: Error>(self, n: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Json(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some((key, Json(value))) = map.next_entry::<String, Json>()? {
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct Version {
        #[serde(deserialize_with = "super::u32")]
        version: u32,
    }

    fn parse(text: &str) -> Result<u32, String> {
        serde_json::from_str::<Version>(text)
            .map(|v| v.version)
            .map_err(|e| e.to_string())
    }

    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default, deserialize_with = "super::json")]
        config: Option<serde_json::Value>,
    }

    #[test]
    fn big_integers_are_floats_in_yaml_as_in_json() {
        let yaml: Config =
            serde_norway::from_str("config: [4474800457524050583879680, 1, x]").unwrap();
        let json: Config =
            serde_json::from_str(r#"{"config": [4474800457524050583879680, 1, "x"]}"#).unwrap();
        assert_eq!(yaml.config, json.config);
        assert!(json.config.unwrap()[0].is_f64());
        let none: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(none.config, None);
    }

    #[test]
    fn whole_numbers_are_read_however_they_are_written() {
        assert_eq!(parse(r#"{"version": 7}"#), Ok(7));
        assert_eq!(parse(r#"{"version": 7.0}"#), Ok(7));
        assert_eq!(parse(r#"{"version": 4294967295}"#), Ok(u32::MAX));
        for bad in ["7.5", "-1", "4294967296", "4294967296.0", "\"7\"", "1e300"] {
            let err = parse(&format!(r#"{{"version": {bad}}}"#)).unwrap_err();
            assert!(err.contains("a whole number"), "{bad}: {err}");
        }
    }
}
