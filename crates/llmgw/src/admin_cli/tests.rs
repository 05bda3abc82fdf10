//! Unit tests of the admin CLI; panicking is how tests fail.
#![allow(clippy::unwrap_used)]

use super::*;
use clap::{CommandFactory as _, Parser};

const JAN_1_2026: i64 = 1_767_225_600_000;

fn tenant(name: &str, budget: Option<&str>) -> Tenant {
    Tenant {
        id: format!("ten_{name}"),
        name: name.into(),
        status: "active".into(),
        monthly_budget_usd: budget.map(Into::into),
        created_at: JAN_1_2026 + 90 * 60_000,
    }
}

#[test]
fn tenant_table_aligns_columns() {
    let table = tenant_table(&[tenant("acme", Some("12.50")), tenant("b", None)]);
    assert_eq!(
        table,
        "NAME  ID        STATUS  BUDGET USD  CREATED\n\
         acme  ten_acme  active  12.50       2026-01-01 01:30 UTC\n\
         b     ten_b     active  unlimited   2026-01-01 01:30 UTC\n"
    );
    assert_eq!(tenant_table(&[]), "NAME  ID  STATUS  BUDGET USD  CREATED\n");
}

#[test]
fn key_table_shows_all_models_and_never() {
    let json = r#"{"data":[
        {"id":"k1","tenant_id":"t","name":"ci","prefix":"sk-llmgw-ab","status":"active",
         "allowed_models":[],"limits":{},"expires_at":null,"created_at":0,"last_used_at":null,"revoked_at":null},
        {"id":"k2","tenant_id":"t","name":"bot","prefix":"sk-llmgw-cd","status":"revoked",
         "allowed_models":["gpt-4o","demo"],"expires_at":1767225600000,"last_used_at":0}]}"#;
    let list: List<Key> = serde_json::from_str(json).unwrap();
    assert_eq!(
        key_table(&list.data),
        "NAME  ID  PREFIX       STATUS   MODELS       EXPIRES               LAST USED\n\
         ci    k1  sk-llmgw-ab  active   all          never                 never\n\
         bot   k2  sk-llmgw-cd  revoked  gpt-4o,demo  2026-01-01 00:00 UTC  1970-01-01 00:00 UTC\n"
    );
}

#[test]
fn created_key_prints_secret_once_with_warning() {
    let json = r#"{"key":{"id":"k1","name":"ci","prefix":"sk-llmgw-ab","status":"active",
        "allowed_models":null},"secret":"sk-llmgw-abSECRET"}"#;
    let output = created_key(serde_json::from_str(json).unwrap());
    assert_eq!(output.matches("sk-llmgw-abSECRET").count(), 1);
    assert!(output.contains("Secret: sk-llmgw-abSECRET\n"));
    assert!(output.contains("will not be shown again"));
}

#[test]
fn table_cells_cannot_inject_control_characters() {
    let table = render_table(
        &["A", "B"],
        [vec!["x\n\u{1b}[31m".into(), "y".into()]].into_iter(),
    );
    assert_eq!(table, "A        B\nx??[31m  y\n");
}

#[test]
fn formats_unix_ms_as_utc_minutes() {
    assert_eq!(format_ms(0), "1970-01-01 00:00 UTC");
    assert_eq!(format_ms(1_700_000_000_000), "2023-11-14 22:13 UTC");
    assert_eq!(format_ms(-1), "1969-12-31 23:59 UTC");
    assert_eq!(format_ms(951_782_400_000), "2000-02-29 00:00 UTC");
}

#[test]
fn parses_expiry_forms() {
    assert_eq!(parse_expires_at("1767225600000"), Ok(JAN_1_2026));
    assert_eq!(parse_expires_at(" 2026-01-01 "), Ok(JAN_1_2026));
    assert_eq!(parse_expires_at("2024-02-29"), Ok(1_709_164_800_000));
    for bad in [
        "",
        "tomorrow",
        "2026-1-01",
        "2026/01/01",
        "2026-01-01T00:00:00Z",
        "+2026-01-1",
    ] {
        let error = parse_expires_at(bad).unwrap_err();
        assert!(error.contains("YYYY-MM-DD"), "{bad}: {error}");
    }
    for bad in ["2023-02-29", "2026-13-01", "2026-00-10", "2026-04-31"] {
        let error = parse_expires_at(bad).unwrap_err();
        assert!(error.contains("is not a calendar date"), "{bad}: {error}");
    }
    assert!(parse_expires_at("1960-06-01").unwrap_err().contains("1970"));
    assert!(
        parse_expires_at("1767225600")
            .unwrap_err()
            .contains("unix seconds")
    );
    assert!(
        parse_expires_at("99999999999999999999")
            .unwrap_err()
            .contains("out of range")
    );
}

#[test]
fn error_messages_carry_status_and_server_message() {
    let envelope: ErrorEnvelope = serde_json::from_str(
        r#"{"error":{"message":"tenant name already exists","type":"invalid_request_error","param":"name","code":"conflict"}}"#,
    )
    .unwrap();
    assert_eq!(
        api_error_message(StatusCode::CONFLICT, Some(&envelope.error.message)),
        "admin API: 409 tenant name already exists"
    );
    assert_eq!(
        api_error_message(StatusCode::BAD_GATEWAY, None),
        "admin API: 502 Bad Gateway"
    );
    assert_eq!(
        api_error_message(StatusCode::NOT_FOUND, Some(" ")),
        "admin API: 404 Not Found"
    );
    assert_eq!(
        api_error_message(StatusCode::UNAUTHORIZED, Some("invalid admin token")),
        "admin API: 401 invalid admin token (check LLMGW_ADMIN_TOKEN / --admin-token)"
    );
}

fn args(url: &str, token: Option<&str>) -> AdminArgs {
    AdminArgs {
        admin_url: url.into(),
        admin_token: token.map(Into::into),
        json: false,
    }
}

#[test]
fn missing_token_names_the_variable() {
    for token in [None, Some("  ")] {
        let error = Admin::new(&args("http://127.0.0.1:8090", token))
            .err()
            .unwrap();
        assert!(error.to_string().contains("LLMGW_ADMIN_TOKEN"), "{error}");
    }
    let error = Admin::new(&args("not a url", Some("t"))).err().unwrap();
    assert!(error.to_string().contains("LLMGW_ADMIN_URL"), "{error}");
}

#[test]
fn urls_keep_names_in_one_segment() {
    let admin = Admin::new(&args("http://h:1/base/", Some("tok"))).unwrap();
    let request = admin
        .request(Method::POST, &["tenants", "acme corp/eu", "disable"])
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        request.url().as_str(),
        "http://h:1/base/admin/v1/tenants/acme%20corp%2Feu/disable"
    );
    assert_eq!(request.headers()["authorization"], "Bearer tok");
}

#[test]
fn request_bodies_omit_unset_fields_and_null_clears_budget() {
    let update = UpdateTenant {
        name: None,
        monthly_budget_usd: Some(None),
    };
    assert_eq!(
        serde_json::to_string(&update).unwrap(),
        r#"{"monthly_budget_usd":null}"#
    );
    let create = CreateTenant {
        name: "acme".into(),
        monthly_budget_usd: Some("12.50".into()),
        limits: Some(Limits {
            tokens_per_day: Some(5),
            ..Limits::default()
        }),
    };
    assert_eq!(
        serde_json::to_string(&create).unwrap(),
        r#"{"name":"acme","monthly_budget_usd":"12.50","limits":{"tokens_per_day":5}}"#
    );
    let key = CreateKey {
        name: "ci".into(),
        allowed_models: vec![],
        expires_at: None,
    };
    assert_eq!(serde_json::to_string(&key).unwrap(), r#"{"name":"ci"}"#);
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    keys: KeysCommand,
}

#[test]
fn clap_definitions_are_valid() {
    Cli::command().debug_assert();
    let cli = Cli::try_parse_from([
        "llmgw",
        "--admin-token",
        "t",
        "create",
        "acme",
        "--name",
        "ci",
        "--model",
        "a",
        "--model",
        "b",
        "--json",
    ])
    .unwrap();
    assert!(cli.admin.json);
    let KeysCommand::Create { models, .. } = cli.keys else {
        panic!("{:?}", cli.keys)
    };
    assert_eq!(models, ["a", "b"]);
}
