//! Entry points for `cargo bench -p llmgw-router` (`benches/routing.rs`): the
//! CPU work the router adds per request and per chunk, without any I/O. Not
//! an API: hidden from docs, used by nothing else.

use std::sync::Arc;

use bytes::Bytes;

use crate::balance::{self, Candidate};
use crate::catalog::{Catalog, Defaults, Route};
use crate::config::{BreakerConfig, ModelConfig, Timeouts};
use crate::metrics::Metrics;
use crate::provider::anthropic::StreamTranslator;
use crate::provider::chat_chunk::ChunkView;
use crate::relay::tally::Tally;

pub struct Fixture {
    catalog: Catalog,
    rng: fastrand::Rng,
}

impl Fixture {
    pub fn new(models: &[ModelConfig]) -> anyhow::Result<Fixture> {
        let metrics = Metrics::new();
        let catalog = Catalog::from_config(
            models,
            &Defaults {
                timeouts: Timeouts::default(),
                breaker: &BreakerConfig::default(),
                metrics: &metrics,
            },
        )?;
        Ok(Fixture {
            catalog,
            rng: fastrand::Rng::with_seed(7),
        })
    }

    fn route(&self, alias: &str) -> anyhow::Result<Arc<Route>> {
        self.catalog
            .resolve(alias)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no model {alias}"))
    }

    /// The routing decision every request makes before its first call:
    /// resolve the alias, order its deployments, take a breaker permit.
    pub fn decide(&mut self, alias: &str) -> anyhow::Result<usize> {
        let route = self.route(alias)?;
        let candidates: Vec<Candidate<'_>> = route
            .deployments
            .iter()
            .map(|deployment| Candidate {
                weight: deployment.weight,
                priority: deployment.priority,
                latency: &deployment.latency,
            })
            .collect();
        let order = balance::order(route.strategy, &candidates, &mut self.rng);
        let first = order.first().copied().unwrap_or_default();
        if let Some(permit) = route.deployments[first].breaker.try_acquire() {
            permit.success();
        }
        Ok(first)
    }

    /// The upstream request body for the first deployment of `alias`.
    pub fn build_request(
        &self,
        alias: &str,
        client_body: &[u8],
        stream: bool,
    ) -> anyhow::Result<usize> {
        let route = self.route(alias)?;
        let request = crate::provider::build_request(client_body, &route.deployments[0], stream)
            .map_err(|error| anyhow::anyhow!(error.message))?;
        Ok(request.body.len())
    }
}

/// Per-chunk work of the relay: read the chunk's view and account it.
pub struct ChunkMeter {
    tally: Tally,
    translator: StreamTranslator,
}

impl Default for ChunkMeter {
    fn default() -> Self {
        ChunkMeter {
            tally: Tally::default(),
            translator: StreamTranslator::new("bench"),
        }
    }
}

impl ChunkMeter {
    /// An OpenAI chunk, forwarded as it is.
    pub fn openai_chunk(&mut self, chunk: &Bytes) -> anyhow::Result<()> {
        let view: ChunkView = serde_json::from_slice(chunk)?;
        self.tally.observe(&view);
        Ok(())
    }

    /// An Anthropic event, translated into OpenAI chunks that are accounted.
    pub fn anthropic_event(&mut self, event: &str, data: &str) -> anyhow::Result<usize> {
        let translated = self
            .translator
            .on_event(event, data)
            .map_err(|error| anyhow::anyhow!(error.message))?;
        for chunk in &translated.chunks {
            self.openai_chunk(chunk)?;
        }
        Ok(translated.chunks.len())
    }
}

/// Token estimates with a real BPE (loads it on the first call).
pub fn text_tokens(upstream_model: &str, text: &str) -> u64 {
    crate::usage::tokens::text_tokens(upstream_model, text)
}

/// Prompt tokens of a chat request body (loads the BPE on the first call).
pub fn prompt_tokens(upstream_model: &str, body: &[u8]) -> u64 {
    crate::usage::tokens::prompt_tokens(upstream_model, body)
}

/// The usage spool on disk, for `benches/spool.rs`.
pub use crate::usage::bench as spool;
