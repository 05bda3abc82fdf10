//! The OpenAI error shape every refusal must have.

use serde_json::Value;

/// `{"error": {"message", "type", "param", "code"}}`: a non-empty message,
/// a type, and `param`/`code` null or strings. Returns `param`.
pub fn assert_openai_error(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).expect("an error body is JSON");
    let object = value.as_object().expect("an error body is an object");
    assert_eq!(object.len(), 1, "only `error` at the top: {value}");
    let error = object
        .get("error")
        .and_then(Value::as_object)
        .expect("`error` is an object");
    let message = error.get("message").and_then(Value::as_str);
    assert!(
        message.is_some_and(|message| !message.is_empty()),
        "{value}"
    );
    assert!(error.get("type").is_some_and(Value::is_string), "{value}");
    for field in ["param", "code"] {
        let present = error.get(field).unwrap_or(&Value::Null);
        assert!(present.is_null() || present.is_string(), "{field}: {value}");
    }
    error
        .get("param")
        .and_then(Value::as_str)
        .map(str::to_owned)
}
