//! Throttling of failed authentication per client address.
//!
//! Each request answered 401 (a missing, unknown, revoked or expired key)
//! counts as one failure of its client address. After `max_failures` of them
//! within `window_secs` (a fixed window from the address's first failure),
//! the address's API requests get 429 `rate_limit_exceeded` with
//! `Retry-After` (the rest of the window) at once: no key is hashed or
//! looked up in billing, so a key-guessing flood costs one map lookup per
//! request (counted by `llmgw_edge_auth_throttled_total`).
//!
//! The client address is the TCP peer; behind a load balancer it is the
//! first hop of `X-Forwarded-For` not in `trusted_proxies` (walked from the
//! right), and only when the peer itself is a trusted proxy: otherwise any
//! client could name any address. The table holds at most
//! `max_tracked_addresses` entries; when full, expired entries go first,
//! then the oldest tenth.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, StatusCode};
use llmgw_proto::ErrorCode;
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::metrics::Metrics;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthThrottleConfig {
    /// Failed authentications one address may have within `window_secs`;
    /// past it, 429 until the window ends. 0 = never throttle.
    pub max_failures: u32,
    /// The window, from an address's first failure.
    pub window_secs: u64,
    /// Addresses remembered at once (bounded memory under a flood from
    /// many addresses).
    pub max_tracked_addresses: usize,
    /// Load balancers and proxies (CIDRs, e.g. `10.0.0.0/8`) whose
    /// `X-Forwarded-For` is believed. Empty (the default): the TCP peer is
    /// the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for AuthThrottleConfig {
    fn default() -> Self {
        AuthThrottleConfig {
            max_failures: 20,
            window_secs: 60,
            max_tracked_addresses: 100_000,
            trusted_proxies: Vec::new(),
        }
    }
}

impl AuthThrottleConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.window_secs == 0 {
            problems.push("window_secs: must be above 0".to_owned());
        }
        if self.max_tracked_addresses == 0 {
            problems.push("max_tracked_addresses: must be above 0".to_owned());
        }
        for (index, cidr) in self.trusted_proxies.iter().enumerate() {
            if let Err(problem) = Cidr::parse(cidr) {
                problems.push(format!("trusted_proxies[{index}]: {problem}"));
            }
        }
        problems
    }
}

/// A network, as `address/prefix` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an address or CIDR"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {bits}"))?,
        };
        Ok(Cidr { network, prefix })
    }

    fn contains(&self, address: IpAddr) -> bool {
        let mask = |bits: u32, width: u32| -> u128 {
            if bits == 0 {
                0
            } else {
                (!0u128 << (width - bits)) & (!0u128 >> (128 - width))
            }
        };
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = mask(u32::from(self.prefix), 32);
                u128::from(u32::from(network)) & mask == u128::from(u32::from(address)) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = mask(u32::from(self.prefix), 128);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

struct Failures {
    count: u32,
    since: Instant,
}

pub(crate) struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    max_tracked: usize,
    trusted: Vec<Cidr>,
    table: Mutex<HashMap<IpAddr, Failures>>,
    metrics: Arc<Metrics>,
}

impl AuthThrottle {
    /// `config` must have passed `validate` (a bad CIDR is skipped).
    pub fn new(config: &AuthThrottleConfig, metrics: Arc<Metrics>) -> AuthThrottle {
        AuthThrottle {
            max_failures: config.max_failures,
            window: Duration::from_secs(config.window_secs.max(1)),
            max_tracked: config.max_tracked_addresses.max(1),
            trusted: config
                .trusted_proxies
                .iter()
                .filter_map(|cidr| Cidr::parse(cidr).ok())
                .collect(),
            table: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The client's address: the peer, or the first untrusted hop of
    /// `X-Forwarded-For` (from the right) when the peer is a trusted proxy.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        let trusted = |address: IpAddr| self.trusted.iter().any(|cidr| cidr.contains(address));
        if !trusted(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map_while(|hop| hop.trim().parse::<IpAddr>().ok())
            .map(|hop| hop.to_canonical())
            .collect();
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            client = hop;
            if !trusted(hop) {
                break;
            }
        }
        client
    }

    /// How long `client` must wait, if it is throttled.
    fn throttled(&self, client: IpAddr) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let mut table = self.table.lock().ok()?;
        let failures = table.get(&client)?;
        let elapsed = failures.since.elapsed();
        if elapsed >= self.window {
            table.remove(&client);
            return None;
        }
        (failures.count >= self.max_failures).then(|| self.window - elapsed)
    }

    fn failed(&self, client: IpAddr) {
        if self.max_failures == 0 {
            return;
        }
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        let now = Instant::now();
        if !table.contains_key(&client) && table.len() >= self.max_tracked {
            self.make_room(&mut table, now);
        }
        let failures = table.entry(client).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.duration_since(failures.since) >= self.window {
            *failures = Failures {
                count: 0,
                since: now,
            };
        }
        failures.count = failures.count.saturating_add(1);
    }

    /// Expired entries first; if none, the oldest tenth (so a full table
    /// costs one sweep per tenth of its size, not one per insert).
    fn make_room(&self, table: &mut HashMap<IpAddr, Failures>, now: Instant) {
        table.retain(|_, failures| now.duration_since(failures.since) < self.window);
        if table.len() < self.max_tracked {
            return;
        }
        let mut starts: Vec<Instant> = table.values().map(|failures| failures.since).collect();
        let cut = (starts.len() / 10).max(1).min(starts.len() - 1);
        let (_, oldest_kept, _) = starts.select_nth_unstable(cut);
        let oldest_kept = *oldest_kept;
        table.retain(|_, failures| failures.since >= oldest_kept);
        // Entries sharing that instant may all survive: then drop any.
        while table.len() >= self.max_tracked {
            let Some(any) = table.keys().next().copied() else {
                break;
            };
            table.remove(&any);
        }
    }
}

/// The middleware on API routes: throttled addresses get 429 before
/// anything else; a 401 answer counts as a failure.
pub(crate) async fn throttle(
    State(throttle): State<Arc<AuthThrottle>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let (Some(peer), true) = (peer, request.uri().path().starts_with("/v1/")) else {
        return next.run(request).await;
    };
    let client = throttle.client(peer, request.headers());
    if let Some(wait) = throttle.throttled(client) {
        throttle.metrics.auth_throttled.inc();
        let refusal = ApiError::new(
            ErrorCode::RateLimited,
            "Too many failed authentications from your address; retry after Retry-After seconds.",
        )
        .with_retry_after(wait);
        return if request.uri().path().starts_with("/v1/messages") {
            refusal.into_anthropic_response()
        } else {
            refusal.into_response()
        };
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        throttle.failed(client);
    }
    response
}

#[cfg(test)]
mod tests;
