//! The accounts store against real databases: every behaviour test runs on a
//! fresh Postgres database (`llmgw-testdb`: `$LLMGW_TEST_POSTGRES`, else
//! 127.0.0.1:5432, user postgres) and on a fresh
//! SQLite file, so the two backends cannot drift apart.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod keys;
mod migrate;
mod support;
mod tenants;

use llmgw_billing::store::{KeyStatus, Limits, Store, StoreError, Tenant, TenantStatus};

/// Runs each `module::test` on both backends, as `postgres::test` and
/// `sqlite::test`.
macro_rules! on_both_backends {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                let db = crate::support::TestDb::postgres().await;
                crate::$module::$test(&db).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                let db = crate::support::TestDb::sqlite().await;
                crate::$module::$test(&db).await;
            })*
        }
    };
}

on_both_backends!(
    tenants::tenants_crud,
    tenants::duplicate_names_conflict_and_write_nothing,
    tenants::invalid_input_writes_nothing,
    keys::key_lifecycle,
    keys::rotation,
    keys::expired_keys_and_disabled_tenants_do_not_authorize,
    keys::secret_is_never_stored,
    keys::tenants_are_isolated,
    keys::lookup_carries_effective_limits_and_budget,
);

#[tokio::test]
async fn unknown_url_scheme_is_invalid() {
    let err = Store::connect("mysql://localhost/x").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

/// The JSON shape the admin API and the service rely on.
#[test]
fn statuses_and_limits_serialize_as_documented() {
    let t = Tenant {
        id: "i".into(),
        name: "n".into(),
        status: TenantStatus::Disabled,
        monthly_budget_nano_usd: None,
        limits: Limits {
            concurrent: Some(2),
            ..Limits::default()
        },
        policy: None,
        created_at: 1,
        updated_at: 2,
    };
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["status"], "disabled");
    assert_eq!(json["limits"]["concurrent"], 2);
    assert!(serde_json::from_str::<Limits>(r#"{"rpm": 1}"#).is_err());
    assert_eq!(serde_json::to_value(KeyStatus::Revoked).unwrap(), "revoked");
}
