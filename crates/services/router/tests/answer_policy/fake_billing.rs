//! A billing stand-in on loopback: records the usage and audit events the
//! router's spools deliver (deduplicated as billing does), and answers
//! nothing else (the policy feed's polls fail, so the config's set stays).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use llmgw_proto::billing_v1::audit_server::{Audit, AuditServer};
use llmgw_proto::billing_v1::ledger_server::{Ledger, LedgerServer};
use llmgw_proto::billing_v1::{
    AuditEvent, MonthToDateSpendRequest, MonthToDateSpendResponse, RecordAuditRequest,
    RecordAuditResponse, RecordUsageRequest, RecordUsageResponse, UsageEvent,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

#[derive(Default)]
pub struct Recorded {
    usage: Mutex<Vec<UsageEvent>>,
    audit: Mutex<Vec<AuditEvent>>,
}

impl Recorded {
    pub fn usage(&self) -> Vec<UsageEvent> {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn audit(&self) -> Vec<AuditEvent> {
        self.audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The usage events of `request_id`, once there are `count`.
    pub async fn usage_of(&self, request_id: &str, count: usize) -> Vec<UsageEvent> {
        wait_for(|| {
            let events: Vec<UsageEvent> = self
                .usage()
                .into_iter()
                .filter(|event| event.request_id == request_id)
                .collect();
            (events.len() >= count).then_some(events)
        })
        .await
        .unwrap_or_else(|| panic!("no usage event for {request_id}: {:?}", self.usage()))
    }

    /// The audit events of `request_id`, once there are `count`.
    pub async fn audit_of(&self, request_id: &str, count: usize) -> Vec<AuditEvent> {
        wait_for(|| {
            let mut events: Vec<AuditEvent> = self
                .audit()
                .into_iter()
                .filter(|event| event.request_id == request_id)
                .collect();
            events.sort_by_key(|event| (event.attempt, event.sequence));
            (events.len() >= count).then_some(events)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no {count} audit events for {request_id}: {:?}",
                self.audit()
            )
        })
    }
}

/// Polls `found` until it gives something; `None` after a generous bound
/// (it only bounds the wait: the spools deliver within milliseconds).
async fn wait_for<T>(mut found: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = found() {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct FakeLedger(Arc<Recorded>);

#[tonic::async_trait]
impl Ledger for FakeLedger {
    async fn record_usage(
        &self,
        request: Request<RecordUsageRequest>,
    ) -> Result<Response<RecordUsageResponse>, Status> {
        let mut usage = self.0.usage.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut inserted, mut duplicates) = (0, 0);
        for event in request.into_inner().events {
            let known = usage
                .iter()
                .any(|seen| (&seen.request_id, seen.attempt) == (&event.request_id, event.attempt));
            if known {
                duplicates += 1;
            } else {
                inserted += 1;
                usage.push(event);
            }
        }
        Ok(Response::new(RecordUsageResponse {
            inserted,
            duplicates,
        }))
    }

    async fn month_to_date_spend(
        &self,
        _request: Request<MonthToDateSpendRequest>,
    ) -> Result<Response<MonthToDateSpendResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

struct FakeAudit(Arc<Recorded>);

#[tonic::async_trait]
impl Audit for FakeAudit {
    async fn record_audit(
        &self,
        request: Request<RecordAuditRequest>,
    ) -> Result<Response<RecordAuditResponse>, Status> {
        let mut audit = self.0.audit.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut inserted, mut duplicates) = (0, 0);
        for event in request.into_inner().events {
            let identity = (&event.request_id, event.attempt, event.sequence);
            if audit
                .iter()
                .any(|seen| (&seen.request_id, seen.attempt, seen.sequence) == identity)
            {
                duplicates += 1;
            } else {
                inserted += 1;
                audit.push(event);
            }
        }
        Ok(Response::new(RecordAuditResponse {
            inserted,
            duplicates,
        }))
    }
}

/// Serves until the test's runtime ends.
pub async fn start() -> (SocketAddr, Arc<Recorded>) {
    let recorded = Arc::new(Recorded::default());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind billing");
    let address = listener.local_addr().expect("billing address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LedgerServer::new(FakeLedger(recorded.clone())))
            .add_service(AuditServer::new(FakeAudit(recorded.clone())))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    (address, recorded)
}
