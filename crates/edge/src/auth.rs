//! API key authentication. For now the keys come from the config file; the
//! accounts service adds database-backed keys behind the same lookup.

use std::collections::HashMap;

use http::HeaderMap;
use llmgw_proto::ErrorCode;

use crate::config::ApiKeyConfig;
use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub key_id: String,
}

#[derive(Debug, Default)]
pub struct Keys {
    by_key: HashMap<String, Principal>,
}

impl Keys {
    pub fn from_config(keys: &[ApiKeyConfig]) -> anyhow::Result<Keys> {
        let mut by_key = HashMap::new();
        for (position, key) in keys.iter().enumerate() {
            anyhow::ensure!(
                key.key.len() >= 16,
                "api key {position} (tenant {}) is shorter than 16 characters",
                key.tenant
            );
            let principal = Principal {
                tenant: key.tenant.clone(),
                key_id: key
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("config-{}-{position}", key.tenant)),
            };
            anyhow::ensure!(
                by_key.insert(key.key.clone(), principal).is_none(),
                "api key {position} is configured twice"
            );
        }
        Ok(Keys { by_key })
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<&Principal, ApiError> {
        let Some(key) = bearer(headers) else {
            return Err(ApiError::new(
                ErrorCode::InvalidApiKey,
                "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY).",
            ));
        };
        self.by_key
            .get(key)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidApiKey, "Incorrect API key provided."))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}
