//! Pass-through requests (Messages to Anthropic, embeddings): the client's
//! JSON with only `model` replaced, without a round trip through a parsed
//! value (which would reorder fields and reformat numbers).

use std::borrow::Cow;

use llmgw_proto::ErrorCode;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ProviderError;

/// The client's body with `model` set to `upstream_model`; every other
/// field, known to us or not, passes untouched: each value is copied as
/// the client wrote it, in the client's order.
pub fn replace(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, ProviderError> {
    let fields: Fields = serde_json::from_slice(body).map_err(|_| {
        ProviderError::new(
            ErrorCode::InvalidRequest,
            "request body is not a JSON object",
        )
    })?;
    let mut out = Vec::with_capacity(body.len() + upstream_model.len());
    out.push(b'{');
    let mut model_written = false;
    let encode_error = |_| ProviderError::new(ErrorCode::Internal, "could not encode the request");
    for (name, value) in &fields.0 {
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name).map_err(encode_error)?;
        out.push(b':');
        if name == "model" {
            serde_json::to_writer(&mut out, upstream_model).map_err(encode_error)?;
            model_written = true;
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    if !model_written {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"model\":");
        serde_json::to_writer(&mut out, upstream_model).map_err(encode_error)?;
    }
    out.push(b'}');
    Ok(out)
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
}
