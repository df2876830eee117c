//! JSON objects that refuse duplicate member names at every depth.
//!
//! `serde_json::Map` silently keeps the last of two equal names, while other
//! parsers (an upstream's, a WAF's) may keep the first: a token carrying
//! `{"sub":"alice","sub":"admin"}` would mean different things to different
//! readers, so jwtgate refuses it (RFC 7515 §5.2, RFC 8725 §3.5 spirit).

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::{Map, Number, Value};

/// Why bytes are not a strict JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrictError {
    /// Not JSON, or JSON but not an object.
    Invalid,
    /// Some object (top-level or nested) names a member twice.
    Duplicate,
}

/// Parses `bytes` as one JSON object, rejecting duplicate names anywhere inside.
pub(crate) fn object(bytes: &[u8]) -> Result<Map<String, Value>, StrictError> {
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Seed(&duplicate).deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(StrictError::Invalid),
        Err(_) if duplicate.get() => Err(StrictError::Duplicate),
        Err(_) => Err(StrictError::Invalid),
    }
}

/// Deserializes any JSON value; the cell records that a duplicate name caused the error.
#[derive(Clone, Copy)]
struct Seed<'a>(&'a Cell<bool>);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            let value = access.next_value_seed(self)?;
            if map.insert(name, value).is_some() {
                self.0.set(true);
                return Err(A::Error::custom("duplicate member name"));
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects() {
        let m = object(br#"{"a":1,"b":[1,{"c":null}],"d":1.5,"e":"x","f":true}"#).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m["d"], serde_json::json!(1.5));
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert_eq!(object(br#"{"sub":"a","sub":"b"}"#), Err(StrictError::Duplicate));
        assert_eq!(object(br#"{"x":{"k":1,"k":2}}"#), Err(StrictError::Duplicate));
        assert_eq!(object(br#"{"x":[{"k":1,"k":2}]}"#), Err(StrictError::Duplicate));
        // JSON escapes decode to the same name.
        assert_eq!(object(br#"{"sub":"a","s\u0075b":"b"}"#), Err(StrictError::Duplicate));
    }

    #[test]
    fn refuses_non_objects_and_trailing_bytes() {
        assert_eq!(object(b"[1]"), Err(StrictError::Invalid));
        assert_eq!(object(b"{} {}"), Err(StrictError::Invalid));
        assert_eq!(object(b"{"), Err(StrictError::Invalid));
        assert_eq!(object(b"{\"a\":1e400}"), Err(StrictError::Invalid));
    }
}
