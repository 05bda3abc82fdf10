//! The feed against a fake billing `Policies` served in process (the same
//! HTTP/2 and gRPC as between processes, over in-memory pipes), with tokio's
//! clock paused: every refresh interval passes at once, no test waits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // panicking is how tests fail

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llmgw_grpc::{InProcessListener, Listener};
use llmgw_proto::billing_v1::policies_server::{Policies, PoliciesServer};
use llmgw_proto::billing_v1::{GetPoliciesRequest, GetPoliciesResponse, PolicyDocument, WordList};
use tokio::sync::oneshot;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use super::{FeedMetrics, PolicyFeed};
use crate::{Action, Direction, PolicySet, PolicySource, PolicySpec, RuleKind, RuleSpec};

fn words_rule(id: &str, terms: &[&str], lists: &[&str]) -> RuleSpec {
    RuleSpec {
        id: id.to_owned(),
        kind: RuleKind::Words,
        direction: Direction::Both,
        action: Action::Block,
        mask: None,
        terms: terms.iter().map(|t| (*t).to_owned()).collect(),
        word_lists: lists.iter().map(|t| (*t).to_owned()).collect(),
        pattern: None,
        skip_separators: false,
        fold_chinese_variants: false,
    }
}

fn config_source() -> PolicySource {
    PolicySource {
        default: "from-file".to_owned(),
        policies: [(
            "from-file".to_owned(),
            PolicySpec {
                audit_excerpts: false,
                rules: vec![words_rule("file-words", &["alpha"], &[])],
            },
        )]
        .into(),
        ..PolicySource::default()
    }
}

/// Billing's answer: policy `strict` (word list `banned`) for everyone,
/// `lenient` (no rules) for tenant `acme`.
fn billing_set(etag: &str, banned: &[&str]) -> GetPoliciesResponse {
    let strict = PolicySpec {
        audit_excerpts: false,
        rules: vec![words_rule("banned-words", &[], &["banned"])],
    };
    GetPoliciesResponse {
        etag: etag.to_owned(),
        unchanged: false,
        default_policy: "strict".to_owned(),
        policies: vec![
            PolicyDocument {
                name: "strict".to_owned(),
                spec_json: serde_json::to_string(&strict).unwrap(),
            },
            PolicyDocument {
                name: "lenient".to_owned(),
                spec_json: r#"{"rules":[]}"#.to_owned(),
            },
        ],
        word_lists: vec![WordList {
            name: "banned".to_owned(),
            terms: banned.iter().map(|t| (*t).to_owned()).collect(),
        }],
        tenant_policies: HashMap::from([("acme".to_owned(), "lenient".to_owned())]),
        match_hash_key: b"billing's key".to_vec().into(),
    }
}

/// A fake billing: serves `set` (or fails while `down`), and remembers the
/// etags it was asked with.
#[derive(Default)]
struct Billing {
    set: Mutex<Option<GetPoliciesResponse>>,
    down: Mutex<bool>,
    asked_with: Mutex<Vec<String>>,
}

struct FakePolicies(Arc<Billing>);

#[tonic::async_trait]
impl Policies for FakePolicies {
    async fn get_policies(
        &self,
        request: Request<GetPoliciesRequest>,
    ) -> Result<Response<GetPoliciesResponse>, Status> {
        let known = request.into_inner().known_etag;
        self.0.asked_with.lock().unwrap().push(known.clone());
        if *self.0.down.lock().unwrap() {
            return Err(Status::unavailable("database unreachable"));
        }
        let set = self.0.set.lock().unwrap().clone().unwrap_or_default();
        if set.etag == known {
            return Ok(Response::new(GetPoliciesResponse {
                etag: known,
                unchanged: true,
                ..GetPoliciesResponse::default()
            }));
        }
        Ok(Response::new(set))
    }
}

/// Serves `billing` in process; returns its URL and what stops it.
async fn serve(billing: Arc<Billing>) -> (String, oneshot::Sender<()>) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let in_process = InProcessListener::bind("billing");
    let url = in_process.url();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(llmgw_grpc::serve(
        Routes::new(PoliciesServer::new(FakePolicies(billing))),
        String::new,
        Listener::new(tcp, Some(in_process)),
        async {
            let _ = stopped.await;
        },
    ));
    (url, stop)
}

fn blocks(set: &PolicySet, tenant: &str, text: &str) -> bool {
    set.for_tenant(tenant)
        .is_some_and(|policy| policy.check(Direction::Input, text).blocking().is_some())
}

/// Sleeps (paused clock: instantly) until `done`, for at most a minute of
/// the test's clock.
async fn wait_for(what: &str, feed: &PolicyFeed, done: impl Fn(&PolicySet) -> bool) {
    for _ in 0..600 {
        if done(&feed.current()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(start_paused = true)]
async fn starts_from_the_file_follows_billing_and_keeps_the_last_good_set() {
    let billing = Arc::new(Billing::default());
    *billing.down.lock().unwrap() = true;
    let (url, stop_billing) = serve(billing.clone()).await;
    let metrics = FeedMetrics::default();
    let feed = PolicyFeed::new(&config_source(), metrics.clone()).unwrap();
    assert!(blocks(&feed.current(), "anyone", "say alpha"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = feed.follow(
        llmgw_grpc::channel(&url).unwrap(),
        Duration::from_secs(5),
        async {
            let _ = stopped.await;
        },
    );

    // Billing down at start: the file's set stays in force.
    while metrics.fetch_failures.get() < 2 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(blocks(&feed.current(), "anyone", "say alpha"));
    assert_eq!(metrics.from_billing.get(), 0);

    // Billing answers: its set replaces the file's.
    *billing.set.lock().unwrap() = Some(billing_set("rev-1", &["bravo"]));
    *billing.down.lock().unwrap() = false;
    wait_for("billing's first set", &feed, |set| {
        blocks(set, "anyone", "say bravo")
    })
    .await;
    let set = feed.current();
    assert!(
        !blocks(&set, "anyone", "say alpha"),
        "the file's set is gone"
    );
    assert!(
        !blocks(&set, "acme", "say bravo"),
        "acme has its own policy"
    );
    assert_eq!(set.for_tenant("acme").unwrap().name(), "lenient");
    assert_eq!(metrics.from_billing.get(), 1);
    assert_eq!(metrics.updates.get(), 1);

    // Hashes are keyed with billing's key now: they agree with any other
    // replica's.
    let elsewhere = PolicySet::compile(
        &super::source_from(billing_set("rev-1", &["bravo"])).unwrap(),
        b"billing's key",
    )
    .unwrap();
    let hash = |set: &PolicySet| {
        set.for_tenant("anyone")
            .unwrap()
            .check(Direction::Input, "bravo")
            .hits[0]
            .match_hash
            .clone()
    };
    assert_eq!(hash(&set), hash(&elsewhere));

    // Unchanged: asked with the etag it holds.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(
        billing
            .asked_with
            .lock()
            .unwrap()
            .ends_with(&["rev-1".to_owned(), "rev-1".to_owned()])
    );
    assert_eq!(metrics.updates.get(), 1);

    // A word list changed through the admin API.
    *billing.set.lock().unwrap() = Some(billing_set("rev-2", &["charlie"]));
    wait_for("the changed word list", &feed, |set| {
        blocks(set, "anyone", "say charlie") && !blocks(set, "anyone", "say bravo")
    })
    .await;

    // A set that does not compile: the last good one stays, and it is not
    // compiled again while billing serves it.
    let mut broken = billing_set("rev-3", &["delta"]);
    broken.default_policy = "no-such-policy".to_owned();
    *billing.set.lock().unwrap() = Some(broken);
    while metrics.rejected.get() < 1 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(metrics.rejected.get(), 1);
    assert!(blocks(&feed.current(), "anyone", "say charlie"));
    assert!(!blocks(&feed.current(), "anyone", "say delta"));

    // Billing down again: the set in force stays.
    *billing.down.lock().unwrap() = true;
    let failures = metrics.fetch_failures.get();
    while metrics.fetch_failures.get() < failures + 3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(blocks(&feed.current(), "anyone", "say charlie"));

    // Shutdown ends the task.
    let _ = stop.send(());
    task.await.unwrap();
    let _ = stop_billing.send(());
}

#[test]
fn a_bad_file_fails_at_start() {
    let mut source = config_source();
    source.default = "missing".to_owned();
    assert!(PolicyFeed::new(&source, FeedMetrics::default()).is_err());
}

#[test]
fn before_billing_answers_hashes_are_keyed_per_process() {
    let one = PolicyFeed::new(&config_source(), FeedMetrics::default()).unwrap();
    let other = PolicyFeed::new(&config_source(), FeedMetrics::default()).unwrap();
    let hash = |feed: &PolicyFeed| {
        feed.current()
            .for_tenant("t")
            .unwrap()
            .check(Direction::Input, "alpha")
            .hits[0]
            .match_hash
            .clone()
    };
    assert_eq!(hash(&one), hash(&one));
    assert_ne!(hash(&one), hash(&other));
}
