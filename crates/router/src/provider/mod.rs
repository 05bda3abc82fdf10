//! Upstream provider protocols. Each provider turns an OpenAI chat request
//! into its own wire format and its answers back into OpenAI chunks.

pub mod openai;

use llmgw_proto::ErrorCode;
use llmgw_proto::error_v1;

/// A failed upstream call, as the client will see it. `message` is safe to
/// show: upstream bodies and internal details go to the logs only.
#[derive(Debug, Clone)]
pub struct ProviderError {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
}

impl ProviderError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ProviderError {
        ProviderError {
            code,
            message: message.into(),
            param: None,
        }
    }

    pub fn into_proto(self) -> error_v1::Error {
        error_v1::Error {
            code: self.code.into(),
            message: self.message,
            param: self.param.unwrap_or_default(),
        }
    }
}
