//! Monthly budgets rebuilt from the usage ledger. The budget counters live
//! in Redis, which can lose them (restart without persistence, failover,
//! flush): from then on every tenant would start the month again from zero.
//! The billing service's ledger knows each tenant's and each key's
//! month-to-date spend, so every `budget_sync_secs` this task asks for it
//! (`Ledger.MonthToDateSpend`, all tenants) and raises each tenant's budget
//! counter, and each key's, to at least that figure (`max`, never lower: the
//! counter also holds reservations the ledger does not know yet). Key floors
//! are raised whether or not the key has a budget: the limits can come with
//! the request (accounts database), not only from the config. Billing or
//! Redis unavailable: the sync is counted, logged at most once per interval,
//! retried sooner, and budgets keep being enforced with what the counters
//! hold.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use llmgw_grpc::Channel;
use llmgw_limiter::{BudgetFloor, FloorOutcome, FloorScope, Month};
use llmgw_proto::billing_v1::MonthToDateSpendRequest;
use llmgw_proto::billing_v1::ledger_client::LedgerClient;
use llmgw_telemetry::OutageLog;
use tokio_util::task::AbortOnDropHandle;

use crate::config::Config;
use crate::service::State;

/// The first sync runs this soon after start (or after the interval, if
/// shorter), so a fresh Redis is rebuilt at once; billing started alongside
/// gets a moment to come up.
const FIRST_SYNC_AFTER: Duration = Duration::from_secs(1);
/// A failed sync is tried again after this (or the interval, if shorter).
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Bound on the whole `MonthToDateSpend` call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Failures are logged at most this often (or once per interval, if longer).
const LOG_EVERY: Duration = Duration::from_secs(60);
/// One entry per tenant and per key with spend this month: room for about
/// a million of them.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Starts the sync if `billing_url` is set and `budget_sync_secs` is not 0;
/// it stops when the handle is dropped. Fails only on an invalid URL:
/// billing being down, or not up yet, is the sync's own business.
pub(crate) fn start(
    config: &Config,
    state: Arc<State>,
) -> anyhow::Result<Option<AbortOnDropHandle<()>>> {
    let Some(url) = config.billing_url.as_deref().filter(|url| !url.is_empty()) else {
        return Ok(None);
    };
    if config.budget_sync_secs == 0 {
        tracing::info!("quota: budget_sync_secs is 0: budgets are not rebuilt from the ledger");
        return Ok(None);
    }
    // Lazy: connected on the first sync, reconnected after billing restarts.
    let channel =
        llmgw_grpc::channel(url).with_context(|| format!("invalid quota.billing_url {url:?}"))?;
    let client = LedgerClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
    let interval = Duration::from_secs(config.budget_sync_secs);
    Ok(Some(AbortOnDropHandle::new(tokio::spawn(run(
        client, interval, state,
    )))))
}

/// Syncs every `interval` (every `RETRY_AFTER` after a failure) until aborted.
async fn run(mut client: LedgerClient<Channel>, interval: Duration, state: Arc<State>) {
    let log = OutageLog::new(interval.max(LOG_EVERY));
    tokio::time::sleep(FIRST_SYNC_AFTER.min(interval)).await;
    loop {
        let result = sync(&mut client, &state).await;
        state.metrics.budget_sync(match &result {
            Ok(_) => "ok",
            Err(failure) => failure.outcome(),
        });
        let wait = match result {
            Ok(sync) => {
                if log.recovered().is_some() {
                    tracing::info!("quota: budgets are synced from the usage ledger again");
                }
                tracing::debug!(
                    month = %sync.month,
                    tenants = sync.tenants,
                    keys = sync.keys,
                    raised = sync.raised,
                    "quota: budgets synced from the usage ledger"
                );
                interval
            }
            Err(Failure::OtherMonth(month)) => {
                tracing::debug!(%month, "quota: the month turned during a budget sync");
                interval.min(RETRY_AFTER)
            }
            Err(failure) => {
                if let Some(failures) = log.failed() {
                    tracing::warn!(
                        error = %failure,
                        failures,
                        "quota: cannot rebuild budgets from the usage ledger; enforcing them with \
                         the counters as they are, retrying"
                    );
                }
                interval.min(RETRY_AFTER)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// What one successful sync did.
struct Synced {
    month: Month,
    /// Tenants with spend this month.
    tenants: usize,
    /// Keys with spend this month.
    keys: usize,
    /// Of those tenants and keys, whose counter was below the ledger.
    raised: usize,
}

enum Failure {
    /// No answer from billing (down, not up yet, timed out, refused).
    Billing(String),
    /// Billing answered something unusable.
    Invalid(String),
    /// The counters' store did not take a floor.
    Store(String),
    /// The ledger's month is not the store's current month any more.
    OtherMonth(Month),
}

impl Failure {
    fn outcome(&self) -> &'static str {
        match self {
            Failure::Billing(_) => "billing_unavailable",
            Failure::Invalid(_) => "invalid_response",
            Failure::Store(_) => "store_unavailable",
            Failure::OtherMonth(_) => "other_month",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Billing(error) => write!(f, "billing MonthToDateSpend failed: {error}"),
            Failure::Invalid(error) => write!(f, "billing MonthToDateSpend answered {error}"),
            Failure::Store(error) => write!(f, "budget counter not raised: {error}"),
            Failure::OtherMonth(month) => write!(f, "figures for {month}, not the current month"),
        }
    }
}

/// One sync: the ledger's spend of every tenant and key, then one floor per
/// tenant and one per key.
async fn sync(client: &mut LedgerClient<Channel>, state: &State) -> Result<Synced, Failure> {
    let call = client.month_to_date_spend(MonthToDateSpendRequest {
        tenant: String::new(),
    });
    let response = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            let message = status.message();
            return Err(Failure::Billing(format!("{:?}: {message}", status.code())));
        }
        Err(_) => {
            let seconds = CALL_TIMEOUT.as_secs();
            return Err(Failure::Billing(format!("no answer within {seconds} s")));
        }
    };
    let month = Month::parse(&response.month).map_err(Failure::Invalid)?;
    let mut synced = Synced {
        month,
        tenants: 0,
        keys: 0,
        raised: 0,
    };
    let tenants = response
        .tenants
        .into_iter()
        .filter(|spend| !spend.tenant.is_empty() && spend.cost_nano_usd != 0)
        .map(|spend| BudgetFloor {
            tenant: spend.tenant,
            scope: FloorScope::Tenant,
            month,
            spent_nano_usd: spend.cost_nano_usd,
        });
    let keys = response
        .keys
        .into_iter()
        .filter(|spend| {
            !spend.tenant.is_empty() && !spend.key_id.is_empty() && spend.cost_nano_usd != 0
        })
        .map(|spend| BudgetFloor {
            tenant: spend.tenant,
            scope: FloorScope::Key(spend.key_id),
            month,
            spent_nano_usd: spend.cost_nano_usd,
        });
    for floor in tenants.chain(keys) {
        match floor.scope {
            FloorScope::Tenant => synced.tenants += 1,
            FloorScope::Key(_) => synced.keys += 1,
        }
        match state.store.raise_budget_floor(&floor).await {
            Ok(FloorOutcome::Raised) => {
                synced.raised += 1;
                state.metrics.budget_floor_raised();
            }
            Ok(FloorOutcome::Unchanged) => {}
            // The same for every counter: ask again for the new month.
            Ok(FloorOutcome::OtherMonth) => return Err(Failure::OtherMonth(month)),
            Err(error) => return Err(Failure::Store(error.to_string())),
        }
    }
    Ok(synced)
}
