//! What one upstream attempt's answer has told us so far: finish reason,
//! reported usage, and the generated text (for an estimate when there is no
//! report; see `usage_event`).

use llmgw_openai::Usage as OpenaiUsage;
use llmgw_proto::router_v1::{Usage, UsageSource};

use crate::provider::chat_chunk::ChunkView;

#[derive(Debug, Default)]
pub struct Tally {
    /// Kept only to be tokenized if the provider reports no usage; most
    /// answers are never tokenized.
    generated: String,
    reported: Option<OpenaiUsage>,
    pub finish_reason: Option<String>,
    /// id, created and model of the first chunk, for a synthesised finish chunk.
    pub first: Option<(String, u64, String)>,
}

impl Tally {
    pub fn observe(&mut self, view: &ChunkView<'_>) {
        for choice in &view.choices {
            if let Some(delta) = choice.delta.as_ref().or(choice.message.as_ref()) {
                delta.generated_text(&mut self.generated);
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

    /// The provider's own count, if it sent one.
    pub fn reported(&self) -> Option<Usage> {
        self.reported.as_ref().map(|usage| Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
            cached_tokens: usage.cached_tokens(),
            reasoning_tokens: usage.reasoning_tokens(),
            source: UsageSource::Reported.into(),
        })
    }

    /// The text generated so far, for an estimate.
    pub fn take_generated(&mut self) -> String {
        std::mem::take(&mut self.generated)
    }
}
