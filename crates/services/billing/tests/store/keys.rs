//! Keys: creation, authorization lookups, revocation, rotation, secrecy.

use std::time::Duration;

use llmgw_billing::store::{
    KeyStatus, Limits, NewKey, NewTenant, StoreError, TenantStatus, TenantUpdate, now_ms,
};

use crate::support::{TestDb, by, contains, key, lookup, tenant};

pub async fn key_lifecycle(db: &TestDb) {
    let s = &db.store;
    let t = s.create_tenant(tenant("acme"), &by()).await.unwrap();
    let limits = Limits {
        tokens_per_minute: Some(10_000),
        concurrent: Some(4),
        ..Limits::default()
    };
    let new = NewKey {
        name: "prod".into(),
        allowed_models: vec!["gpt-4o-mini".into(), "demo".into()],
        limits: limits.clone(),
        expires_at: None,
    };
    let (created, secret) = s.create_key(&t.id, new, &by()).await.unwrap();
    assert!(llmgw_apikey::is_well_formed(&secret));
    assert_eq!(
        created.display_prefix,
        llmgw_apikey::display_prefix(&secret)
    );
    assert_eq!(
        (created.status, created.limits.clone()),
        (KeyStatus::Active, limits)
    );
    assert_eq!(
        s.get_key(&created.id).await.unwrap().as_ref(),
        Some(&created)
    );

    let info = lookup(s, &secret).await.unwrap();
    assert_eq!(
        (info.key_id.as_str(), info.name.as_str()),
        (created.id.as_str(), "prod")
    );
    assert_eq!(info.tenant, "acme");
    assert_eq!(info.allowed_models, ["gpt-4o-mini", "demo"]);
    assert_eq!(lookup(s, &llmgw_apikey::generate()).await, None);

    // The use is recorded in the background, shortly after the lookup.
    let mut last_used = None;
    for _ in 0..1_500 {
        last_used = s.get_key(&created.id).await.unwrap().unwrap().last_used_at;
        if last_used.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(last_used.is_some_and(|at| at >= created.created_at));

    let revoked = s.revoke_key(&created.id, &by()).await.unwrap().unwrap();
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert!(revoked.revoked_at.is_some());
    assert_eq!(lookup(s, &secret).await, None);
    // Revoking twice is harmless and keeps the first revocation time.
    assert_eq!(
        s.revoke_key(&created.id, &by()).await.unwrap(),
        Some(revoked)
    );
    assert_eq!(s.revoke_key("missing", &by()).await.unwrap(), None);
    assert_eq!(s.get_key("missing").await.unwrap(), None);
}

pub async fn rotation(db: &TestDb) {
    let s = &db.store;
    let t = s.create_tenant(tenant("acme"), &by()).await.unwrap();
    let expires = now_ms() + 86_400_000;
    let new = NewKey {
        name: "svc".into(),
        allowed_models: vec!["demo".into()],
        limits: Limits {
            requests_per_minute: Some(5),
            ..Limits::default()
        },
        expires_at: Some(expires),
    };
    let (old, old_secret) = s.create_key(&t.id, new, &by()).await.unwrap();
    let (rotated, new_secret) = s.rotate_key(&old.id, &by()).await.unwrap().unwrap();
    assert_ne!(rotated.id, old.id);
    assert_ne!(new_secret, old_secret);
    assert_eq!(
        (&rotated.tenant_id, &rotated.name),
        (&old.tenant_id, &old.name)
    );
    assert_eq!(
        (&rotated.allowed_models, &rotated.limits),
        (&old.allowed_models, &old.limits)
    );
    assert_eq!(rotated.expires_at, Some(expires));
    assert_eq!(lookup(s, &old_secret).await, None);
    assert_eq!(lookup(s, &new_secret).await.unwrap().key_id, rotated.id);
    let statuses: Vec<_> = s
        .list_keys(&t.id)
        .await
        .unwrap()
        .iter()
        .map(|k| k.status)
        .collect();
    assert_eq!(statuses.len(), 2);
    assert!(statuses.contains(&KeyStatus::Revoked) && statuses.contains(&KeyStatus::Active));

    assert_eq!(s.rotate_key("missing", &by()).await.unwrap(), None);
    assert!(matches!(
        s.rotate_key(&old.id, &by()).await,
        Err(StoreError::Invalid(_))
    ));

    // A disabled tenant's key cannot be rotated, and the failed attempt must
    // not leave it revoked.
    s.set_tenant_status(&t.id, TenantStatus::Disabled, &by())
        .await
        .unwrap();
    assert!(matches!(
        s.rotate_key(&rotated.id, &by()).await,
        Err(StoreError::Invalid(_))
    ));
    s.set_tenant_status(&t.id, TenantStatus::Active, &by())
        .await
        .unwrap();
    assert_eq!(lookup(s, &new_secret).await.unwrap().key_id, rotated.id);
    assert_eq!(s.list_keys(&t.id).await.unwrap().len(), 2);
}

pub async fn expired_keys_and_disabled_tenants_do_not_authorize(db: &TestDb) {
    let s = &db.store;
    let t = s.create_tenant(tenant("acme"), &by()).await.unwrap();
    let past = NewKey {
        expires_at: Some(now_ms() - 1_000),
        ..key("old")
    };
    let (_, expired) = s.create_key(&t.id, past, &by()).await.unwrap();
    assert_eq!(lookup(s, &expired).await, None);
    let future = NewKey {
        expires_at: Some(now_ms() + 60_000),
        ..key("new")
    };
    let (_, valid) = s.create_key(&t.id, future, &by()).await.unwrap();
    assert!(lookup(s, &valid).await.is_some());

    s.set_tenant_status(&t.id, TenantStatus::Disabled, &by())
        .await
        .unwrap();
    assert_eq!(lookup(s, &valid).await, None);
    let err = s.create_key(&t.id, key("more"), &by()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("disabled")),
        "{err:?}"
    );
    s.set_tenant_status(&t.id, TenantStatus::Active, &by())
        .await
        .unwrap();
    assert!(lookup(s, &valid).await.is_some());
}

pub async fn secret_is_never_stored(db: &TestDb) {
    let s = &db.store;
    let t = s.create_tenant(tenant("acme"), &by()).await.unwrap();
    let (_, first) = s.create_key(&t.id, key("a"), &by()).await.unwrap();
    let (second_key, _) = s.create_key(&t.id, key("b"), &by()).await.unwrap();
    let (_, second) = s.rotate_key(&second_key.id, &by()).await.unwrap().unwrap();

    for secret in [&first, &second] {
        // The random part alone must not appear either (e.g. stored without
        // its prefix); only the 4 characters of the display prefix may.
        let random = &secret[llmgw_apikey::PREFIX.len()..];
        let rows = db.raw_rows("SELECT * FROM api_keys").await;
        assert_eq!(rows.len(), 3);
        // The scan sees every text column (ids, names, JSON...) of a key.
        assert!(
            rows.iter()
                .all(|r| r.texts.len() >= 6 && r.blobs.len() == 1)
        );
        for row in rows
            .iter()
            .chain(&db.raw_rows("SELECT * FROM tenants").await)
        {
            for text in &row.texts {
                assert!(!text.contains(random), "secret in column value {text:?}");
            }
            for blob in &row.blobs {
                assert!(!contains(blob, random.as_bytes()), "secret in a blob");
            }
        }
        let digests: Vec<&Vec<u8>> = rows.iter().flat_map(|r| &r.blobs).collect();
        let expected = llmgw_apikey::digest(secret).to_vec();
        assert!(digests.contains(&&expected), "the digest is what is stored");
    }
    // On SQLite, also the raw bytes of the database and its WAL.
    if let Some(file) = &db.sqlite_file {
        for suffix in ["", "-wal"] {
            let bytes = std::fs::read(format!("{}{suffix}", file.display())).unwrap_or_default();
            for secret in [&first, &second] {
                let random = &secret[llmgw_apikey::PREFIX.len()..];
                assert!(
                    !contains(&bytes, random.as_bytes()),
                    "secret in file{suffix}"
                );
            }
        }
    }
}

pub async fn tenants_are_isolated(db: &TestDb) {
    let s = &db.store;
    let a = s.create_tenant(tenant("a"), &by()).await.unwrap();
    let b = s.create_tenant(tenant("b"), &by()).await.unwrap();
    for name in ["one", "two"] {
        s.create_key(&a.id, key(name), &by()).await.unwrap();
    }
    // Same key name in another tenant: allowed, and kept apart.
    let (b_key, b_secret) = s.create_key(&b.id, key("one"), &by()).await.unwrap();

    let a_keys = s.list_keys(&a.id).await.unwrap();
    assert_eq!(a_keys.len(), 2);
    assert!(
        a_keys
            .iter()
            .all(|k| k.tenant_id == a.id && k.id != b_key.id)
    );
    // Newest first.
    assert!(a_keys[0].created_at >= a_keys[1].created_at);
    assert_eq!(s.list_keys(&b.id).await.unwrap(), vec![b_key]);
    assert!(s.list_keys("missing").await.unwrap().is_empty());
    assert_eq!(lookup(s, &b_secret).await.unwrap().tenant, "b");
}

/// The lookup gives the key's effective limits (its own over its tenant's
/// defaults for its keys, field by field) and the tenant's budget, as they
/// are at the time of the lookup.
pub async fn lookup_carries_effective_limits_and_budget(db: &TestDb) {
    let s = &db.store;
    let t = s
        .create_tenant(
            NewTenant {
                name: "metered".into(),
                monthly_budget_nano_usd: Some(5_000),
                limits: Limits {
                    requests_per_minute: Some(2),
                    tokens_per_day: Some(1_000),
                    ..Limits::default()
                },
                policy: None,
            },
            &by(),
        )
        .await
        .unwrap();
    let (_, plain) = s.create_key(&t.id, key("plain"), &by()).await.unwrap();
    let own = NewKey {
        limits: Limits {
            requests_per_minute: Some(3),
            concurrent: Some(0),
            ..Limits::default()
        },
        ..key("own")
    };
    let (_, own) = s.create_key(&t.id, own, &by()).await.unwrap();

    let info = lookup(s, &plain).await.unwrap();
    assert_eq!(
        info.limits,
        Limits {
            requests_per_minute: Some(2),
            tokens_per_day: Some(1_000),
            ..Limits::default()
        }
    );
    assert_eq!(info.tenant_monthly_budget_nano_usd, Some(5_000));
    let info = lookup(s, &own).await.unwrap();
    assert_eq!(
        info.limits,
        Limits {
            requests_per_minute: Some(3),
            tokens_per_day: Some(1_000),
            // Zero is a limit, not "unset".
            concurrent: Some(0),
            tokens_per_minute: None,
        }
    );
    assert_eq!(info.tenant_monthly_budget_nano_usd, Some(5_000));

    // The tenant's defaults and budget change: the next lookup says so.
    let update = TenantUpdate {
        monthly_budget_nano_usd: Some(None),
        limits: Some(Limits {
            tokens_per_minute: Some(7),
            ..Limits::default()
        }),
        ..TenantUpdate::default()
    };
    s.update_tenant(&t.id, update, &by())
        .await
        .unwrap()
        .unwrap();
    let info = lookup(s, &plain).await.unwrap();
    assert_eq!(
        info.limits,
        Limits {
            tokens_per_minute: Some(7),
            ..Limits::default()
        }
    );
    assert_eq!(info.tenant_monthly_budget_nano_usd, None);
    let info = lookup(s, &own).await.unwrap();
    assert_eq!(
        info.limits,
        Limits {
            requests_per_minute: Some(3),
            tokens_per_minute: Some(7),
            concurrent: Some(0),
            tokens_per_day: None,
        }
    );

    // A tenant without limits or budget: nothing.
    let bare = s.create_tenant(tenant("bare"), &by()).await.unwrap();
    let (_, secret) = s.create_key(&bare.id, key("k"), &by()).await.unwrap();
    let info = lookup(s, &secret).await.unwrap();
    assert_eq!(info.limits, Limits::default());
    assert_eq!(info.tenant_monthly_budget_nano_usd, None);
}
