//! Request bodies: parsed by `#[serde(deny_unknown_fields)]` types, with the
//! offending field reported in `param`. serde's errors do not say which
//! field failed, so on failure each field is re-checked on its own against
//! a table; the success path is plain serde.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ApiError;

/// What a field check reports: the nested field at fault (for objects such
/// as `limits`) and why.
pub struct FieldError {
    nested: Option<String>,
    message: String,
}

impl FieldError {
    pub fn message(message: impl Into<String>) -> Self {
        FieldError {
            nested: None,
            message: message.into(),
        }
    }
}

/// One field of a request body and how to check its value alone.
pub struct Field {
    pub name: &'static str,
    pub check: fn(&Value) -> Result<(), FieldError>,
    pub required: bool,
}

/// Whether `value` deserializes as `T`.
pub fn typed<T: DeserializeOwned>(value: &Value) -> Result<(), FieldError> {
    T::deserialize(value).map(drop).map_err(|error| FieldError {
        nested: None,
        message: error.to_string(),
    })
}

/// The fields of `limits`, each an optional non-negative integer.
pub const LIMIT_FIELDS: [&str; 4] = [
    "requests_per_minute",
    "tokens_per_minute",
    "tokens_per_day",
    "concurrent",
];

/// `limits`: null or an object of [`LIMIT_FIELDS`], each checked alone.
pub fn limits(value: &Value) -> Result<(), FieldError> {
    let Value::Object(fields) = value else {
        return match value {
            Value::Null => Ok(()),
            _ => Err(FieldError {
                nested: None,
                message: "expected an object of limits or null".to_owned(),
            }),
        };
    };
    for (name, value) in fields {
        if !LIMIT_FIELDS.contains(&name.as_str()) {
            return Err(FieldError {
                nested: Some(name.clone()),
                message: format!("unknown field, expected one of {LIMIT_FIELDS:?}"),
            });
        }
        typed::<Option<u64>>(value).map_err(|error| FieldError {
            nested: Some(name.clone()),
            message: format!("{}: expected a non-negative integer or null", error.message),
        })?;
    }
    Ok(())
}

/// Parses a JSON object body into `T`. Errors: malformed JSON, a body that
/// is not an object, unknown fields and mistyped values, all 400.
pub fn parse<T: DeserializeOwned>(body: &[u8], fields: &[Field]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid(format!("malformed JSON body: {error}")))?;
    let Value::Object(object) = &value else {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    };
    T::deserialize(&value).map_err(|error| match diagnose(object, fields) {
        Some((param, message)) => {
            ApiError::invalid_param(param.clone(), format!("{param}: {message}"))
        }
        // The table and the type disagree (a bug); serde's words still help.
        None => ApiError::invalid(error.to_string()),
    })
}

/// For bodies of routes that take none (disable, revoke...): empty, or an
/// empty object. Anything else is refused rather than silently ignored: the
/// caller probably expected it to mean something.
pub fn parse_empty(body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    parse::<Empty>(body, &[]).map(drop)
}

/// The first field at fault and why: an unknown field, a bad value, or a
/// missing required field.
fn diagnose(object: &Map<String, Value>, fields: &[Field]) -> Option<(String, String)> {
    for (name, value) in object {
        let Some(field) = fields.iter().find(|field| field.name == name) else {
            let known: Vec<&str> = fields.iter().map(|field| field.name).collect();
            return Some((
                name.clone(),
                format!("unknown field, expected one of {known:?}"),
            ));
        };
        if let Err(error) = (field.check)(value) {
            let param = match error.nested {
                Some(nested) => format!("{name}.{nested}"),
                None => name.clone(),
            };
            return Some((param, error.message));
        }
    }
    fields
        .iter()
        .find(|field| field.required && !object.contains_key(field.name))
        .map(|field| (field.name.to_owned(), "missing required field".to_owned()))
}

/// Deserializes a field that may be absent (no change), `null` (clear) or a
/// value (set): `Option<Option<T>>` with `#[serde(default)]`.
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// Checks a limit value fits the database's signed 64-bit integers.
pub fn check_limits(limits: &crate::store::Limits) -> Result<(), ApiError> {
    let values = [
        limits.requests_per_minute,
        limits.tokens_per_minute,
        limits.tokens_per_day,
        limits.concurrent,
    ];
    for (name, value) in LIMIT_FIELDS.iter().zip(values) {
        if value.is_some_and(|value| i64::try_from(value).is_err()) {
            return Err(ApiError::invalid_param(
                format!("limits.{name}"),
                format!("limits.{name}: at most {}", i64::MAX),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only parsed
    struct Request {
        name: String,
        limits: Option<crate::store::Limits>,
    }

    const FIELDS: &[Field] = &[
        Field {
            name: "name",
            check: typed::<String>,
            required: true,
        },
        Field {
            name: "limits",
            check: limits,
            required: false,
        },
    ];

    fn param_of(body: &str) -> Option<String> {
        let error = parse::<Request>(body.as_bytes(), FIELDS).unwrap_err();
        error.param().map(str::to_owned)
    }

    #[test]
    fn names_the_field_at_fault() {
        assert!(parse::<Request>(br#"{"name":"a","limits":{"concurrent":3}}"#, FIELDS).is_ok());
        assert_eq!(param_of(r#"{"name":1}"#).as_deref(), Some("name"));
        assert_eq!(param_of(r#"{}"#).as_deref(), Some("name"));
        assert_eq!(param_of(r#"{"name":"a","x":1}"#).as_deref(), Some("x"));
        assert_eq!(
            param_of(r#"{"name":"a","limits":{"concurrent":-1}}"#).as_deref(),
            Some("limits.concurrent")
        );
        assert_eq!(
            param_of(r#"{"name":"a","limits":{"rpm":1}}"#).as_deref(),
            Some("limits.rpm")
        );
        assert_eq!(param_of(r#"{"name":"a""#), None);
        assert_eq!(param_of(r#"[1]"#), None);
    }

    #[test]
    fn empty_bodies() {
        assert!(parse_empty(b"").is_ok());
        assert!(parse_empty(b" \n").is_ok());
        assert!(parse_empty(b"{}").is_ok());
        assert!(parse_empty(b"{\"reason\":\"x\"}").is_err());
        assert!(parse_empty(b"{").is_err());
    }
}
