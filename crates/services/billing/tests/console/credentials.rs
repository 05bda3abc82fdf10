//! Admin credentials: created with a role (the text answered once, only a
//! digest stored), used as bearer tokens, named in the admin trail, and
//! revoked; names are never reused.

use crate::on_both_backends;
use reqwest::Method;
use serde_json::json;

use crate::as_bearer;
use crate::support::{Backend, start, unique};

on_both_backends!(
    credentials_are_created_used_and_revoked,
    bad_credential_requests_name_the_field
);

async fn credentials_are_created_used_and_revoked(backend: Backend) {
    let service = start(backend).await;
    let name = unique("alice");
    let created = service
        .post("/admin/v1/admins", json!({"name": name, "role": "admin"}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let secret = created.json["secret"].as_str().unwrap().to_owned();
    assert!(llmgw_apikey::is_well_formed_admin(&secret), "{secret}");
    let id = created.json["credential"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created.json["credential"]["role"], "admin");
    assert_eq!(created.json["credential"]["status"], "active");
    assert!(secret.starts_with(created.json["credential"]["prefix"].as_str().unwrap()));

    // The list never shows the text (nor its digest).
    let list = service.get("/admin/v1/admins").await;
    assert_eq!(list.status, 200, "{list:?}");
    assert!(!list.text.contains(&secret));
    let digest: String = llmgw_apikey::digest(&secret)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert!(!list.text.to_lowercase().contains(&digest));
    assert_eq!(list.json["data"][0]["name"], name.as_str());
    assert!(list.json["data"][0]["last_used_at"].is_null());

    // The credential works as a bearer token, and changes made with it are
    // recorded under its name.
    let tenant = unique("by-credential");
    let made = as_bearer(
        &service,
        &secret,
        Method::POST,
        "/admin/v1/tenants",
        Some(&json!({"name": tenant})),
    )
    .await;
    assert_eq!(made.status, 201, "{made:?}");
    let trail = service
        .get(&format!(
            "/admin/v1/audit/admin?target=tenant:{}",
            made.json["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        trail.json["data"][0]["actor"],
        format!("credential:{name}"),
        "{trail:?}"
    );
    let list = service.get("/admin/v1/admins").await;
    assert!(list.json["data"][0]["last_used_at"].is_i64(), "{list:?}");

    // Revoked (by name): refused from then on; revoking again changes nothing.
    let revoked = service
        .post(&format!("/admin/v1/admins/{name}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.json["status"], "revoked");
    assert_eq!(revoked.json["id"], id.as_str());
    let refused = as_bearer(&service, &secret, Method::GET, "/admin/v1/tenants", None).await;
    refused.assert_error(401, None);
    let again = service
        .post(&format!("/admin/v1/admins/{id}/revoke"), json!({}))
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json["revoked_at"], revoked.json["revoked_at"]);
    service
        .post("/admin/v1/admins/no-such-credential/revoke", json!({}))
        .await
        .assert_error(404, None);

    // The name is never reused, so `credential:<name>` in the trail means
    // one credential for good.
    service
        .post("/admin/v1/admins", json!({"name": name, "role": "finance"}))
        .await
        .assert_error(409, Some("name"));

    // Both changes are in the admin trail, without the credential's text.
    let trail = service
        .get(&format!(
            "/admin/v1/audit/admin?target=admin_credential:{id}"
        ))
        .await;
    let actions: Vec<&str> = trail.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["admin_credential.revoke", "admin_credential.create"]
    );
    assert!(!trail.text.contains(&secret));
    service.stop().await.unwrap();
}

async fn bad_credential_requests_name_the_field(backend: Backend) {
    let service = start(backend).await;
    let cases = [
        (json!({"name": "x"}), "role"),
        (json!({"name": "x", "role": "root"}), "role"),
        (json!({"role": "finance"}), "name"),
        (json!({"name": "has space", "role": "finance"}), "name"),
        (
            json!({"name": "6f1c1b2e-8d6a-4b43-9a57-1c2d3e4f5a6b", "role": "finance"}),
            "name",
        ),
        (json!({"name": "x", "role": "finance", "extra": 1}), "extra"),
    ];
    for (body, param) in cases {
        let answer = service.post("/admin/v1/admins", body.clone()).await;
        answer.assert_error(400, Some(param));
    }
    assert_eq!(
        service.get("/admin/v1/admins").await.json["data"],
        json!([])
    );
    // A well-formed credential nobody issued is refused like a wrong token.
    let forged = llmgw_apikey::generate_admin();
    as_bearer(&service, &forged, Method::GET, "/admin/v1/usage", None)
        .await
        .assert_error(401, None);
    service.stop().await.unwrap();
}
