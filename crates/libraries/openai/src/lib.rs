//! OpenAI chat completions wire format.
//!
//! Two kinds of types live here. [`request::ChatRequest`] is a *view* of a
//! client request: it reads only the fields llmgw validates and ignores the
//! rest, because the edge forwards the client's own bytes and so never loses a
//! parameter it does not know. The response types ([`response`]) are complete
//! enough to write what OpenAI writes and keep provider extras (DeepSeek's
//! `reasoning_content`, say) in `extra` maps.

pub mod depth;
pub mod error;
pub mod request;
pub mod response;

pub use depth::exceeds_depth;
pub use error::{ErrorBody, ErrorDetail};
pub use request::{ChatRequest, Content, Message, StreamOptions};
pub use response::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, Choice, ChunkChoice,
    CompletionTokensDetails, Delta, ModelList, ModelObject, PromptTokensDetails, Usage,
};
