//! Verified claims → upstream request headers (DESIGN.md §8 "Claim values").
//! A value that a header cannot carry faithfully refuses the request (401
//! invalid_token); it is never truncated or re-encoded into something else.

use base64::Engine;
use http::header::HeaderValue;
use http::HeaderMap;
use serde_json::Value;

use crate::config::ForwardSettings;
use crate::error::GatewayError;
use crate::token::Claims;

const UNFIT: GatewayError = GatewayError::InvalidToken("a claim cannot be carried in a header");

/// Adds the configured claim headers (and `claims_json_header`) for `claims`.
/// Runs after `strip_request`, so these are the only copies upstream sees.
pub fn inject(
    headers: &mut HeaderMap,
    claims: &Claims,
    forward: &ForwardSettings,
    now: i64,
) -> Result<(), GatewayError> {
    for (claim, header) in &forward.claims {
        let value = if claim == "fresh" {
            HeaderValue::from_static(if claims.is_fresh(now) { "true" } else { "false" })
        } else {
            match claims.all.get(claim) {
                None | Some(Value::Null) => continue,
                Some(v) => header_value(render(v).ok_or(UNFIT)?)?,
            }
        };
        headers.insert(header.clone(), value);
    }
    if let Some(header) = &forward.claims_json_header {
        let json = serde_json::to_vec(&claims.all).map_err(|_| UNFIT)?;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        headers.insert(header.clone(), header_value(encoded)?);
    }
    Ok(())
}

/// Strings as is, numbers and bools as JSON text, arrays of scalars
/// comma-joined, objects (and arrays holding them) as JSON. None = unfit.
pub fn render(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) | Value::Null => Some(value.to_string()),
        Value::Array(items) if items.iter().all(is_scalar) => join_scalars(items),
        Value::Array(_) | Value::Object(_) => Some(value.to_string()),
    }
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn join_scalars(items: &[Value]) -> Option<String> {
    let mut parts = Vec::with_capacity(items.len());
    for item in items {
        let text = render(item)?;
        // A comma or edge whitespace would make the joined list ambiguous.
        if text.contains(',') || text.trim() != text {
            return None;
        }
        parts.push(text);
    }
    Some(parts.join(","))
}

/// Visible ASCII, SP and HTAB only, and no edge whitespace (HTTP strips it, so
/// the upstream would read another value than the token holds). The text's
/// buffer becomes the value's: no copy.
fn header_value(text: String) -> Result<HeaderValue, GatewayError> {
    let fits = text.bytes().all(|b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b));
    if !fits || text.trim_matches([' ', '\t']) != text {
        return Err(UNFIT);
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).map_err(|_| UNFIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_each_json_type() {
        assert_eq!(render(&json!("alice")).unwrap(), "alice");
        assert_eq!(render(&json!(42)).unwrap(), "42");
        assert_eq!(render(&json!(true)).unwrap(), "true");
        assert_eq!(render(&json!(["admin", "dev", 3])).unwrap(), "admin,dev,3");
        assert_eq!(render(&json!({"a": 1})).unwrap(), r#"{"a":1}"#);
        assert_eq!(render(&json!([{"a": 1}])).unwrap(), r#"[{"a":1}]"#);
    }

    #[test]
    fn ambiguous_array_elements_are_unfit() {
        assert!(render(&json!(["a,b"])).is_none());
        assert!(render(&json!([" a"])).is_none());
        assert!(render(&json!(["a "])).is_none());
    }

    #[test]
    fn header_values_refuse_control_and_non_ascii_bytes() {
        let check = |text: &str| header_value(text.to_owned());
        assert_eq!(check("ok value").unwrap(), "ok value");
        assert!(check("a\r\nX-Evil: 1").is_err());
        assert!(check("caf\u{e9}").is_err());
        assert!(check(" padded").is_err());
        assert!(check("a\u{0}b").is_err());
    }
}
