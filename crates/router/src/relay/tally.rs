//! What an answer has told us so far: finish reason and usage.

use llmgw_openai::Usage as OpenaiUsage;
use llmgw_proto::router_v1::{Usage, UsageSource};

use crate::provider::openai::ChunkView;

#[derive(Debug, Default)]
pub struct Tally {
    pub prompt_chars: u64,
    generated_chars: u64,
    reported: Option<OpenaiUsage>,
    pub finish_reason: Option<String>,
    /// id, created and model of the first chunk, for a synthesised finish chunk.
    pub first: Option<(String, u64, String)>,
}

impl Tally {
    pub fn observe(&mut self, view: &ChunkView<'_>) {
        for choice in &view.choices {
            if let Some(delta) = choice.delta.as_ref().or(choice.message.as_ref()) {
                self.generated_chars += delta.generated_chars();
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.to_string());
            }
        }
        if let Some(usage) = &view.usage {
            self.reported = Some(usage.clone());
        }
        if self.first.is_none() {
            self.first = Some((view.id.to_string(), view.created, view.model.to_string()));
        }
    }

    /// Provider-reported usage when there is some; otherwise an estimate
    /// (about four characters a token) flagged as such.
    pub fn usage(&self) -> Usage {
        match &self.reported {
            Some(usage) => Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.total_tokens,
                cached_tokens: usage.cached_tokens(),
                reasoning_tokens: usage.reasoning_tokens(),
                source: UsageSource::Reported.into(),
            },
            None => {
                let prompt_tokens = self.prompt_chars.div_ceil(4);
                let completion_tokens = self.generated_chars.div_ceil(4);
                Usage {
                    prompt_tokens,
                    completion_tokens,
                    total_tokens: prompt_tokens + completion_tokens,
                    cached_tokens: 0,
                    reasoning_tokens: 0,
                    source: UsageSource::Estimated.into(),
                }
            }
        }
    }
}
