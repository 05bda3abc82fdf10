//! The console on the admin listener: its page and files with their
//! security headers, sign-in, the session cookie's flags, CSRF protection
//! of every change, sign-out, expiry (absolute and idle), revocation, and
//! sessions that work on another replica.

use crate::on_both_backends;
use reqwest::Method;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::credential;
use crate::support::{
    self, Answer, Backend, Service, TOKEN, TestDb, config, start, start_with, unique,
};

on_both_backends!(
    page_and_files_are_served_with_a_strict_policy,
    sign_in_gives_a_cookie_that_only_works_with_its_csrf_token,
    sessions_expire_end_and_follow_their_credential,
    sessions_work_on_another_replica,
    secure_cookies_and_a_disabled_console
);

/// A signed-in browser: its cookie (`name=token`) and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
    set_cookie: String,
    session: Value,
}

async fn sign_in(service: &Service, credential: &str) -> Browser {
    let answer = raw_sign_in(service, credential).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let set_cookie = answer.headers[SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    Browser {
        cookie,
        csrf: answer.json["csrf_token"].as_str().unwrap().to_owned(),
        set_cookie,
        session: answer.json,
    }
}

async fn raw_sign_in(service: &Service, credential: &str) -> Answer {
    let response = service
        .http
        .post(service.url("/ui/session"))
        .json(&json!({ "credential": credential }))
        .send()
        .await
        .unwrap();
    support::answer(response).await
}

impl Browser {
    async fn send(
        &self,
        service: &Service,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
        origin: Option<&str>,
    ) -> Answer {
        let mut request = service
            .http
            .request(method, service.url(path))
            .header(COOKIE, &self.cookie);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        support::answer(request.send().await.unwrap()).await
    }

    async fn get(&self, service: &Service, path: &str) -> Answer {
        self.send(service, Method::GET, path, None, None, None)
            .await
    }
}

async fn page_and_files_are_served_with_a_strict_policy(backend: Backend) {
    let service = start(backend).await;
    let page = service.http.get(service.url("/ui/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    // Every file the page names is served, with its type; nothing comes
    // from elsewhere.
    let mut sources = Vec::new();
    for part in html.split(['"', '\'']) {
        if part.starts_with("/ui/assets/") {
            sources.push(part.to_owned());
        }
        assert!(!part.starts_with("http"), "external reference {part}");
    }
    assert!(
        sources.iter().any(|s| s.ends_with("uPlot.iife.min.js")),
        "{sources:?}"
    );
    for source in &sources {
        let file = service.http.get(service.url(source)).send().await.unwrap();
        assert_eq!(file.status(), 200, "{source}");
        let kind = file.headers()["content-type"].to_str().unwrap().to_owned();
        let expected = if source.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(kind.starts_with(expected), "{source}: {kind}");
    }
    let missing = service
        .http
        .get(service.url("/ui/assets/js/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bare = service.http.get(service.url("/ui")).send().await.unwrap();
    assert_eq!(bare.url().path(), "/ui/", "redirected to the page");
    // The API's answers carry the same headers.
    let api = service.get("/admin/v1/tenants").await;
    assert_eq!(api.headers["x-frame-options"], "DENY");
    // Only the admin listener serves the console: not the gRPC port, which
    // the edge and the routers reach.
    for path in ["/ui/", "/ui/session", "/ui/assets/js/app.js"] {
        let grpc = service
            .http
            .get(format!("http://{}{path}", service.grpc))
            .send()
            .await
            .unwrap();
        assert_eq!(grpc.status(), 404, "{path} on the gRPC port");
    }
    service.stop().await.unwrap();
}

async fn sign_in_gives_a_cookie_that_only_works_with_its_csrf_token(backend: Backend) {
    let service = start(backend).await;
    // Wrong credentials, and bodies that are not JSON, get no session.
    raw_sign_in(&service, "wrong-token-0123456789")
        .await
        .assert_error(401, None);
    let form = service
        .http
        .post(service.url("/ui/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("credential={TOKEN}"))
        .send()
        .await
        .unwrap();
    let form = support::answer(form).await;
    form.assert_error(400, None);
    assert!(form.headers.get(SET_COOKIE).is_none());

    let browser = sign_in(&service, TOKEN).await;
    assert_eq!(browser.session["role"], "admin");
    let flags: Vec<&str> = browser.set_cookie.split("; ").skip(1).collect();
    assert_eq!(
        flags,
        ["Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=28800"]
    );
    assert!(browser.cookie.starts_with("llmgw_console="));
    // The answer never holds the cookie's token.
    let token = browser.cookie.split_once('=').unwrap().1;
    assert!(!browser.session.to_string().contains(token));

    // Reads need only the cookie.
    assert_eq!(browser.get(&service, "/admin/v1/tenants").await.status, 200);
    let current = browser.get(&service, "/ui/session").await;
    assert_eq!(current.json["csrf_token"], browser.csrf.as_str());

    // Changes need the CSRF token, and (if the browser says) this origin.
    let body = || Some(json!({"name": unique("console")}));
    let tenants = "/admin/v1/tenants";
    browser
        .send(&service, Method::POST, tenants, body(), None, None)
        .await
        .assert_error(403, None);
    browser
        .send(
            &service,
            Method::POST,
            tenants,
            body(),
            Some("0".repeat(64).as_str()),
            None,
        )
        .await
        .assert_error(403, None);
    browser
        .send(
            &service,
            Method::POST,
            tenants,
            body(),
            Some(&browser.csrf),
            Some("https://evil.example"),
        )
        .await
        .assert_error(403, None);
    assert_eq!(
        service.get(tenants).await.json["data"],
        json!([]),
        "nothing was created"
    );
    let origin = format!("http://{}", service.admin);
    let made = browser
        .send(
            &service,
            Method::POST,
            tenants,
            body(),
            Some(&browser.csrf),
            Some(&origin),
        )
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    // Made with the session, recorded under the token's actor.
    let trail = service.get("/admin/v1/audit/admin").await;
    assert_eq!(trail.json["data"][0]["actor"], actor_of_token());

    // Sign-out needs the CSRF token too, then the cookie is dead.
    browser
        .send(&service, Method::DELETE, "/ui/session", None, None, None)
        .await
        .assert_error(403, None);
    let out = browser
        .send(
            &service,
            Method::DELETE,
            "/ui/session",
            None,
            Some(&browser.csrf),
            None,
        )
        .await;
    assert_eq!(out.status, 204, "{out:?}");
    assert!(
        out.headers[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = browser.get(&service, "/admin/v1/tenants").await;
    after.assert_error(401, None);
    browser
        .get(&service, "/ui/session")
        .await
        .assert_error(401, None);
    service.stop().await.unwrap();
}

fn actor_of_token() -> String {
    let digest = llmgw_apikey::digest(TOKEN);
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("admin:{hex}")
}

/// Runs a statement on the service's database, as an operator would.
async fn execute(service: &Service, statement: &'static str) {
    match service.db.backend {
        Backend::Postgres => {
            let pool = service.db.postgres.as_ref().unwrap().pool().await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&service.db.url).await.unwrap();
            sqlx::query(statement).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

async fn sessions_expire_end_and_follow_their_credential(backend: Backend) {
    let service = start(backend).await;
    let finance = credential(&service, &unique("fin"), "finance").await;
    let browser = sign_in(&service, &finance).await;
    assert_eq!(browser.session["role"], "finance");
    assert_eq!(browser.get(&service, "/admin/v1/usage").await.status, 200);
    // The role comes with the session.
    browser
        .send(
            &service,
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({"name": "x"})),
            Some(&browser.csrf),
            None,
        )
        .await
        .assert_error(403, None);

    // Past its absolute expiry: refused, and the cookie is cleared.
    execute(&service, "UPDATE admin_sessions SET expires_at = 1").await;
    let expired = browser.get(&service, "/admin/v1/usage").await;
    expired.assert_error(401, None);
    assert!(
        expired.headers[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let message = expired.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("sign in again"), "{message}");

    // Idle for longer than session_idle_secs: refused too.
    let idle = sign_in(&service, &finance).await;
    assert_eq!(idle.get(&service, "/admin/v1/usage").await.status, 200);
    execute(&service, "UPDATE admin_sessions SET last_seen_at = 1").await;
    idle.get(&service, "/admin/v1/usage")
        .await
        .assert_error(401, None);

    // Revoking the credential ends its sessions at once.
    let live = sign_in(&service, &finance).await;
    assert_eq!(live.get(&service, "/admin/v1/usage").await.status, 200);
    let name = live.session["actor"]
        .as_str()
        .unwrap()
        .trim_start_matches("credential:")
        .to_owned();
    let revoked = service
        .post(&format!("/admin/v1/admins/{name}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    live.get(&service, "/admin/v1/usage")
        .await
        .assert_error(401, None);
    raw_sign_in(&service, &finance)
        .await
        .assert_error(401, None);
    service.stop().await.unwrap();
}

async fn sessions_work_on_another_replica(backend: Backend) {
    let service = start(backend).await;
    let browser = sign_in(&service, TOKEN).await;
    let replica_db = TestDb {
        url: service.db.url.clone(),
        backend,
        postgres: None,
        dir: std::env::temp_dir().join(format!("llmgw-console-replica-{}", unique("r"))),
    };
    std::fs::create_dir_all(&replica_db.dir).unwrap();
    let mut replica_config = config(&replica_db);
    replica_config.migrate_on_start = false;
    let replica = start_with(replica_db, replica_config).await;
    let current = browser.get(&replica, "/ui/session").await;
    assert_eq!(current.status, 200, "{current:?}");
    assert_eq!(current.json["csrf_token"], browser.csrf.as_str());
    // Signed out on one, signed out on both.
    let out = browser
        .send(
            &replica,
            Method::DELETE,
            "/ui/session",
            None,
            Some(&browser.csrf),
            None,
        )
        .await;
    assert_eq!(out.status, 204);
    browser
        .get(&service, "/ui/session")
        .await
        .assert_error(401, None);
    replica.stop().await.unwrap();
    service.stop().await.unwrap();
}

async fn secure_cookies_and_a_disabled_console(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut secure = config(&db);
    secure.console.secure_cookies = true;
    let service = start_with(db, secure).await;
    let answer = raw_sign_in(&service, TOKEN).await;
    let set_cookie = answer.headers[SET_COOKIE].to_str().unwrap();
    assert!(
        set_cookie.starts_with("__Host-llmgw_console="),
        "{set_cookie}"
    );
    assert!(set_cookie.ends_with("; Secure"), "{set_cookie}");
    service.stop().await.unwrap();

    let db = TestDb::new(backend).await;
    let mut disabled = config(&db);
    disabled.console.enabled = false;
    let service = start_with(db, disabled).await;
    let page = service.http.get(service.url("/ui/")).send().await.unwrap();
    assert_eq!(page.status(), 401, "no console: an unknown admin path");
    service.stop().await.unwrap();
}
