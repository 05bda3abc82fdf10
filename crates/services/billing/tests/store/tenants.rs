//! Tenants, and name conflicts (tenant and key names).

use llmgw_billing::store::{Limits, NewKey, NewTenant, StoreError, TenantStatus, TenantUpdate};

use crate::support::{TestDb, by, key, tenant};

pub async fn tenants_crud(db: &TestDb) {
    let s = &db.store;
    let limits = Limits {
        requests_per_minute: Some(60),
        ..Limits::default()
    };
    let zeta = s
        .create_tenant(
            NewTenant {
                name: "zeta".into(),
                monthly_budget_nano_usd: Some(5_000_000_000),
                limits: limits.clone(),
                policy: None,
            },
            &by(),
        )
        .await
        .unwrap();
    assert_eq!(zeta.status, TenantStatus::Active);
    assert_eq!(zeta.monthly_budget_nano_usd, Some(5_000_000_000));
    let alpha = s.create_tenant(tenant("alpha"), &by()).await.unwrap();

    let names: Vec<String> = s
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(s.get_tenant(&zeta.id).await.unwrap().as_ref(), Some(&zeta));
    assert_eq!(s.get_tenant("zeta").await.unwrap().as_ref(), Some(&zeta));
    assert_eq!(s.get_tenant("nope").await.unwrap(), None);

    let new_limits = Limits {
        tokens_per_day: Some(1_000_000),
        ..Limits::default()
    };
    let update = TenantUpdate {
        name: Some("omega".into()),
        monthly_budget_nano_usd: Some(None),
        limits: Some(new_limits.clone()),
        policy: None,
    };
    let updated = s
        .update_tenant(&zeta.id, update, &by())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.monthly_budget_nano_usd),
        ("omega", None)
    );
    assert_eq!(updated.limits, new_limits);
    assert!(updated.updated_at >= zeta.updated_at);
    assert_eq!(
        s.get_tenant("omega").await.unwrap().as_ref(),
        Some(&updated)
    );
    assert_eq!(s.get_tenant("zeta").await.unwrap(), None);

    // An empty update changes nothing but the timestamp; a budget is set back.
    let set_budget = TenantUpdate {
        monthly_budget_nano_usd: Some(Some(7)),
        ..Default::default()
    };
    let again = s
        .update_tenant(&alpha.id, set_budget, &by())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.name.as_str(), again.monthly_budget_nano_usd),
        ("alpha", Some(7))
    );
    let same = s
        .update_tenant(&alpha.id, TenantUpdate::default(), &by())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.monthly_budget_nano_usd, Some(7));

    let disabled = s
        .set_tenant_status(&alpha.id, TenantStatus::Disabled, &by())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disabled.status, TenantStatus::Disabled);
    assert_eq!(
        s.get_tenant(&alpha.id).await.unwrap().unwrap().status,
        TenantStatus::Disabled
    );

    assert_eq!(
        s.update_tenant("missing", TenantUpdate::default(), &by())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.set_tenant_status("missing", TenantStatus::Active, &by())
            .await
            .unwrap(),
        None
    );
}

pub async fn duplicate_names_conflict_and_write_nothing(db: &TestDb) {
    let s = &db.store;
    let acme = s.create_tenant(tenant("acme"), &by()).await.unwrap();
    let err = s.create_tenant(tenant("acme"), &by()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("acme")),
        "{err:?}"
    );
    assert_eq!(s.list_tenants().await.unwrap(), vec![acme.clone()]);

    let other = s.create_tenant(tenant("other"), &by()).await.unwrap();
    let rename = TenantUpdate {
        name: Some("acme".into()),
        ..Default::default()
    };
    let err = s.update_tenant(&other.id, rename, &by()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.get_tenant(&other.id).await.unwrap(), Some(other));

    let (first, _) = s.create_key(&acme.id, key("ci"), &by()).await.unwrap();
    let err = s.create_key(&acme.id, key("ci"), &by()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("ci")),
        "{err:?}"
    );
    assert_eq!(s.list_keys(&acme.id).await.unwrap(), vec![first.clone()]);

    // Only active keys hold their name: once revoked, it is free again.
    s.revoke_key(&first.id, &by()).await.unwrap().unwrap();
    s.create_key(&acme.id, key("ci"), &by()).await.unwrap();
    assert_eq!(s.list_keys(&acme.id).await.unwrap().len(), 2);
}

pub async fn invalid_input_writes_nothing(db: &TestDb) {
    let s = &db.store;
    for bad in ["", "has space", "ü", &"x".repeat(65)] {
        let err = s.create_tenant(tenant(bad), &by()).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err:?}");
    }
    let budget = NewTenant {
        monthly_budget_nano_usd: Some(u64::MAX),
        ..tenant("big")
    };
    assert!(matches!(
        s.create_tenant(budget, &by()).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(s.list_tenants().await.unwrap().is_empty());

    let t = s.create_tenant(tenant("t"), &by()).await.unwrap();
    assert!(matches!(
        s.create_key(&t.id, key("a/b"), &by()).await,
        Err(StoreError::Invalid(_))
    ));
    let empty_model = NewKey {
        allowed_models: vec![String::new()],
        ..key("k")
    };
    assert!(matches!(
        s.create_key(&t.id, empty_model, &by()).await,
        Err(StoreError::Invalid(_))
    ));
    let err = s
        .create_key("no-such-tenant", key("k"), &by())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(s.list_keys(&t.id).await.unwrap().is_empty());
    assert!(db.raw_rows("SELECT * FROM api_keys").await.is_empty());
}
