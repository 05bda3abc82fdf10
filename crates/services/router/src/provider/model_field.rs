//! Pass-through requests (OpenAI-compatible chat, Messages to Anthropic,
//! embeddings): the client's JSON with only `model` replaced (and, for an
//! OpenAI stream, usage asked for), without a round trip through a parsed
//! value (which would reorder fields, reformat numbers and cost a map of
//! the whole body per request).

use std::borrow::Cow;

use llmgw_proto::ErrorCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ProviderError;

/// The client's body with `model` set to `upstream_model`; every other
/// field, known to us or not, passes untouched: each value is copied as
/// the client wrote it, in the client's order.
pub fn replace(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, ProviderError> {
    rewrite(body, upstream_model, false)
}

/// [`replace`], and when `include_usage`, `stream_options.include_usage`
/// set to true (the client's other stream options kept; anything but an
/// object there is replaced), so that a stream reports its usage.
pub fn rewrite(
    body: &[u8],
    upstream_model: &str,
    include_usage: bool,
) -> Result<Vec<u8>, ProviderError> {
    let fields: Fields = serde_json::from_slice(body).map_err(|_| {
        ProviderError::new(
            ErrorCode::InvalidRequest,
            "request body is not a JSON object",
        )
    })?;
    // Room for the added `"stream_options":{"include_usage":true}` too.
    let mut out = Vec::with_capacity(body.len() + upstream_model.len() + 40);
    out.push(b'{');
    let mut model_written = false;
    let mut options_written = !include_usage;
    for (name, value) in &fields.0 {
        if out.len() > 1 {
            out.push(b',');
        }
        write_string(&mut out, name)?;
        out.push(b':');
        match name.as_ref() {
            "model" => {
                write_string(&mut out, upstream_model)?;
                model_written = true;
            }
            "stream_options" if include_usage => {
                stream_options(&mut out, value)?;
                options_written = true;
            }
            _ => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    if !model_written {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"model\":");
        write_string(&mut out, upstream_model)?;
    }
    if !options_written {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
    }
    out.push(b'}');
    Ok(out)
}

/// The client's `stream_options` with `include_usage` set to true.
fn stream_options(out: &mut Vec<u8>, value: &RawValue) -> Result<(), ProviderError> {
    out.push(b'{');
    // Not an object (null, a typo): replaced, as OpenAI would refuse it.
    if let Ok(options) = serde_json::from_str::<Fields>(value.get()) {
        for (name, value) in options.0.iter().filter(|(name, _)| name != "include_usage") {
            write_string(out, name)?;
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
            out.push(b',');
        }
    }
    out.extend_from_slice(br#""include_usage":true}"#);
    Ok(())
}

fn write_string(out: &mut Vec<u8>, text: &str) -> Result<(), ProviderError> {
    serde_json::to_writer(out, text)
        .map_err(|_| ProviderError::new(ErrorCode::Internal, "could not encode the request"))
}

/// A JSON object's members in order, values as raw JSON.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Members<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Fields<'a>, M::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(Members(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_model_changes() {
        let body = br#"{"model":"alias","temperature":0.70,"input":["a"],"x":{"y":1e3}}"#;
        let out = replace(body, "up").expect("rewritten");
        assert_eq!(
            &out[..],
            br#"{"model":"up","temperature":0.70,"input":["a"],"x":{"y":1e3}}"#
        );
        assert_eq!(
            &replace(b"{}", "m").expect("rewritten")[..],
            br#"{"model":"m"}"#
        );
        assert!(replace(b"[1]", "m").is_err());
    }

    #[test]
    fn streams_ask_for_usage_keeping_the_clients_options() {
        let rewritten = |body: &[u8]| {
            String::from_utf8(rewrite(body, "up", true).expect("rewritten")).expect("utf-8")
        };
        assert_eq!(
            rewritten(br#"{"model":"a","stream":true,"n":1.50}"#),
            r#"{"model":"up","stream":true,"n":1.50,"stream_options":{"include_usage":true}}"#
        );
        assert_eq!(
            rewritten(br#"{"stream_options":{"include_usage":false,"x":[1]},"model":"a"}"#),
            r#"{"stream_options":{"x":[1],"include_usage":true},"model":"up"}"#
        );
        assert_eq!(
            rewritten(br#"{"model":"a","stream_options":null}"#),
            r#"{"model":"up","stream_options":{"include_usage":true}}"#
        );
        assert_eq!(
            rewritten(b"{}"),
            r#"{"model":"up","stream_options":{"include_usage":true}}"#
        );
    }
}
