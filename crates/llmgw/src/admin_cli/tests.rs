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
        policy: None,
        created_at: JAN_1_2026 + 90 * 60_000,
    }
}

#[test]
fn tenant_table_aligns_columns() {
    let mut strict = tenant("b", None);
    strict.policy = Some("strict".into());
    let table = tenant_table(&[tenant("acme", Some("12.50")), strict]);
    assert_eq!(
        table,
        "NAME  ID        STATUS  BUDGET USD  POLICY   CREATED\n\
         acme  ten_acme  active  12.50       default  2026-01-01 01:30 UTC\n\
         b     ten_b     active  unlimited   strict   2026-01-01 01:30 UTC\n"
    );
    assert_eq!(
        tenant_table(&[]),
        "NAME  ID  STATUS  BUDGET USD  POLICY  CREATED\n"
    );
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
        policy: None,
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
        policy: None,
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

#[test]
fn tenant_policy_flags() {
    assert_eq!(tenant_policy(None, false), None);
    assert_eq!(
        tenant_policy(Some("strict".into()), false),
        Some(Some("strict".into()))
    );
    assert_eq!(tenant_policy(Some(String::new()), false), Some(None));
    assert_eq!(tenant_policy(None, true), Some(None));
    let clear = UpdateTenant {
        name: None,
        monthly_budget_usd: None,
        policy: tenant_policy(None, true),
    };
    assert_eq!(serde_json::to_string(&clear).unwrap(), r#"{"policy":null}"#);
    let set = UpdateTenant {
        name: None,
        monthly_budget_usd: None,
        policy: tenant_policy(Some("strict".into()), false),
    };
    assert_eq!(
        serde_json::to_string(&set).unwrap(),
        r#"{"policy":"strict"}"#
    );
}

#[derive(Debug, Parser)]
struct TenantsCli {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    tenants: TenantsCommand,
}

#[test]
fn tenants_update_takes_policy_or_no_policy() {
    TenantsCli::command().debug_assert();
    let cli =
        TenantsCli::try_parse_from(["llmgw", "update", "acme", "--policy", "strict"]).unwrap();
    let TenantsCommand::Update {
        policy, no_policy, ..
    } = cli.tenants
    else {
        panic!("{:?}", cli.tenants)
    };
    assert_eq!((policy.as_deref(), no_policy), (Some("strict"), false));
    assert!(
        TenantsCli::try_parse_from(["llmgw", "update", "acme", "--policy", "x", "--no-policy"])
            .is_err()
    );
}

/// `llmgw audit`'s shape, as main.rs declares it.
#[derive(Debug, Parser)]
struct AuditCli {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    filters: AuditFilters,
    #[command(subcommand)]
    trail: Option<AuditCommand>,
}

#[test]
fn audit_parses_filters_and_the_admin_trail() {
    AuditCli::command().debug_assert();
    let cli = AuditCli::try_parse_from([
        "llmgw",
        "--tenant",
        "acme",
        "--key",
        "k1",
        "--rule",
        "no-secrets",
        "--direction",
        "input",
        "--from",
        "2026-11-01",
        "--limit",
        "5",
        "--csv",
    ])
    .unwrap();
    assert!(cli.trail.is_none());
    assert_eq!(cli.filters.tenant.as_deref(), Some("acme"));
    assert_eq!(cli.filters.key_id.as_deref(), Some("k1"));
    assert_eq!(cli.filters.rule_id.as_deref(), Some("no-secrets"));
    assert_eq!(cli.filters.page.limit, Some(5));
    assert!(cli.filters.page.csv);
    let cli = AuditCli::try_parse_from([
        "llmgw",
        "admin",
        "--actor",
        "admin:0123",
        "--action",
        "key.revoke",
        "--json",
    ])
    .unwrap();
    assert!(cli.admin.json);
    let Some(AuditCommand::Admin { actor, action, .. }) = cli.trail else {
        panic!("{:?}", cli.trail)
    };
    assert_eq!(actor.as_deref(), Some("admin:0123"));
    assert_eq!(action.as_deref(), Some("key.revoke"));
    // CSV and JSON are two different outputs.
    assert!(AuditCli::try_parse_from(["llmgw", "--csv", "--json"]).is_err());
}

#[test]
fn audit_tables_show_a_page_and_the_next_cursor() {
    let page: audit::AuditPage = serde_json::from_str(
        r#"{"data":[{"request_id":"r1","attempt":0,"sequence":2,"tenant":"acme","key_id":"k1",
            "model":"m","policy":"strict","rule_id":"no-secrets","rule_kind":"secret",
            "direction":"input","action":"block","location":"messages[0].content",
            "offset":3,"length":5,"match_hash":"ab","excerpt":"","occurred_at_ms":1767225600000}],
            "next_cursor":"1767225600000.0.2.7231"}"#,
    )
    .unwrap();
    assert_eq!(
        audit::events_table(&page),
        "TIME                  TENANT  KEY  DIRECTION  POLICY  RULE        ACTION  LOCATION             REQUEST/ATTEMPT/SEQ\n\
         2026-01-01 00:00 UTC  acme    k1   input      strict  no-secrets  block   messages[0].content  r1/0/2\n\
         more: add --cursor 1767225600000.0.2.7231\n"
    );
    let trail: audit::AuditPage = serde_json::from_str(
        r#"{"data":[
            {"id":3,"at":1767225600000,"actor":"admin:0123456789ab","client_address":"127.0.0.1:5000",
             "action":"key.revoke","target":"key:k1","before":{"status":"active","revoked_at":null,"name":"ci"},
             "after":{"status":"revoked","revoked_at":5,"name":"ci"}},
            {"id":2,"at":1767225600000,"actor":"admin:0123456789ab","client_address":"127.0.0.1:5000",
             "action":"tenant.create","target":"tenant:t1","before":null,"after":{"name":"acme"}},
            {"id":1,"at":1767225600000,"actor":"admin:0123456789ab","client_address":"127.0.0.1:5000",
             "action":"policy.delete","target":"policy:p","before":{"rules":[]},"after":null}],
            "next_cursor":null}"#,
    )
    .unwrap();
    assert_eq!(
        audit::admin_table(&trail),
        "TIME                  ACTOR               ADDRESS         ACTION         TARGET     CHANGED\n\
         2026-01-01 00:00 UTC  admin:0123456789ab  127.0.0.1:5000  key.revoke     key:k1     revoked_at, status\n\
         2026-01-01 00:00 UTC  admin:0123456789ab  127.0.0.1:5000  tenant.create  tenant:t1  created\n\
         2026-01-01 00:00 UTC  admin:0123456789ab  127.0.0.1:5000  policy.delete  policy:p   deleted\n"
    );
}

#[test]
fn audit_urls_carry_only_the_filters_given() {
    let admin = Admin::new(&args("http://h:1/", Some("tok"))).unwrap();
    let request = admin
        .query(
            &["audit", "admin"],
            &[
                ("actor", Some("admin:ab cd")),
                ("action", None),
                ("limit", Some("5")),
            ],
        )
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        request.url().as_str(),
        "http://h:1/admin/v1/audit/admin?actor=admin%3Aab+cd&limit=5"
    );
    let bare = admin
        .query(&["audit"], &[("tenant", None)])
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(bare.url().as_str(), "http://h:1/admin/v1/audit");
    let remove = admin
        .request(Method::POST, &["word-lists", "banned", "terms:remove"])
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        remove.url().as_str(),
        "http://h:1/admin/v1/word-lists/banned/terms:remove"
    );
}

#[test]
fn policies_render_lists_and_rules() {
    let list: policies::PolicyList = serde_json::from_str(
        r#"{"default":"baseline","data":[
            {"name":"baseline","source":"config","overrides_config":false,"rules":2,"updated_at":null},
            {"name":"strict","source":"database","overrides_config":true,"rules":1,"updated_at":1767225600000}]}"#,
    )
    .unwrap();
    assert_eq!(
        policies::policy_list(&list),
        "Default policy: baseline\n\
         NAME      SOURCE                       RULES  UPDATED\n\
         baseline  config                       2      -\n\
         strict    database (overrides config)  1      2026-01-01 00:00 UTC\n"
    );
    let detail: serde_json::Value = serde_json::from_str(
        r#"{"name":"strict","source":"database","overrides_config":false,"updated_at":1767225600000,
            "is_default":false,"tenants":["acme","globex"],
            "spec":{"audit_excerpts":true,"rules":[
              {"id":"w","kind":"words","direction":"output","action":"redact","terms":["a","b"],"word_lists":["banned"]},
              {"id":"keys","kind":"regex","action":"block","pattern":"sk-[a-z]+"}]}}"#,
    )
    .unwrap();
    assert_eq!(
        policies::policy_detail(&detail),
        "Policy strict: database, updated 2026-01-01 00:00 UTC\n\
         Tenants: acme, globex\n\
         Audit events keep a masked excerpt.\n\
         RULE  KIND   DIRECTION  ACTION  MATCHES\n\
         w     words  output     redact  2 terms; lists banned\n\
         keys  regex  both       block   /sk-[a-z]+/\n"
    );
}

#[test]
fn word_lists_read_one_term_per_line_and_print_them_back() {
    assert_eq!(
        word_lists::terms_of("alpha\r\n  beta \n\n敏感词\n"),
        ["alpha", "beta", "敏感词"]
    );
    let list = serde_json::json!({"name": "banned", "terms": ["alpha", "敏感词", "a\u{1b}[31m"]});
    assert_eq!(word_lists::terms_lines(&list), "alpha\n敏感词\na[31m\n");
    assert_eq!(
        word_lists::summary(&serde_json::json!({"name": "banned", "term_count": 3})),
        "Word list banned: 3 terms"
    );
    let listing = serde_json::json!({"data": [
        {"name": "banned", "source": "database", "overrides_config": true, "term_count": 100000, "updated_at": 1767225600000_i64},
        {"name": "pii", "source": "config", "overrides_config": false, "term_count": 2, "updated_at": null}
    ]});
    assert_eq!(
        word_lists::word_list_table(&listing),
        "NAME    SOURCE                       TERMS   UPDATED\n\
         banned  database (overrides config)  100000  2026-01-01 00:00 UTC\n\
         pii     config                       2       -\n"
    );
}

#[derive(Debug, Parser)]
struct WordListsCli {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: WordListsCommand,
}

#[test]
fn word_list_commands_parse() {
    WordListsCli::command().debug_assert();
    let cli =
        WordListsCli::try_parse_from(["llmgw", "add", "banned", "敏感词", "two words"]).unwrap();
    let WordListsCommand::Add { name, terms } = cli.command else {
        panic!("{:?}", cli.command)
    };
    assert_eq!(
        (name.as_str(), terms.as_slice()),
        ("banned", &["敏感词".to_owned(), "two words".to_owned()][..])
    );
    assert!(WordListsCli::try_parse_from(["llmgw", "remove", "banned"]).is_err());
    assert!(WordListsCli::try_parse_from(["llmgw", "put", "banned"]).is_err());
}
