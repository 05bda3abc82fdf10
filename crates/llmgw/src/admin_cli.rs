//! `llmgw tenants …` and `llmgw keys …`: a thin client of the billing
//! service's admin HTTP API. Rendering, dates and error messages are pure
//! functions so they are unit-tested without a server.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Admin API base URL.
    #[arg(long, env = "LLMGW_ADMIN_URL", default_value = "http://127.0.0.1:8090")]
    pub admin_url: String,
    /// Admin token (also read from LLMGW_ADMIN_TOKEN).
    #[arg(long, env = "LLMGW_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        name: String,
        /// Monthly budget in USD, e.g. 12.50 (default: unlimited).
        #[arg(long)]
        monthly_budget_usd: Option<String>,
        #[arg(long)]
        requests_per_minute: Option<u64>,
        #[arg(long)]
        tokens_per_minute: Option<u64>,
        #[arg(long)]
        tokens_per_day: Option<u64>,
        /// Maximum requests in flight.
        #[arg(long)]
        concurrent: Option<u64>,
    },
    /// List tenants.
    List,
    /// Show one tenant (by id or name).
    Get { tenant: String },
    /// Rename a tenant or change its budget.
    Update {
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        /// New monthly budget in USD; `none` removes the budget.
        #[arg(long)]
        monthly_budget_usd: Option<String>,
    },
    /// Disable a tenant: its keys stop working until it is enabled again.
    Disable { tenant: String },
    /// Enable a disabled tenant.
    Enable { tenant: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create an API key for a tenant; prints its secret once.
    Create {
        tenant: String,
        #[arg(long)]
        name: String,
        /// Model the key may use (repeatable; default: every model).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Expiry: unix milliseconds or YYYY-MM-DD (midnight UTC).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List a tenant's keys.
    List { tenant: String },
    /// Revoke a key immediately.
    Revoke { key_id: String },
    /// Replace a key's secret; prints the new secret once.
    Rotate { key_id: String },
}

pub async fn tenants(args: &AdminArgs, command: TenantsCommand) -> anyhow::Result<()> {
    let admin = Admin::new(args)?;
    let request = match command {
        TenantsCommand::Create {
            name,
            monthly_budget_usd,
            requests_per_minute,
            tokens_per_minute,
            tokens_per_day,
            concurrent,
        } => {
            let limits = Limits {
                requests_per_minute,
                tokens_per_minute,
                tokens_per_day,
                concurrent,
            };
            let body = CreateTenant {
                name,
                monthly_budget_usd,
                limits: (limits != Limits::default()).then_some(limits),
            };
            admin.request(Method::POST, &["tenants"])?.json(&body)
        }
        TenantsCommand::List => {
            let request = admin.request(Method::GET, &["tenants"])?;
            return admin
                .print(request, |list: List<Tenant>| tenant_table(&list.data))
                .await;
        }
        TenantsCommand::Get { tenant } => admin.request(Method::GET, &["tenants", &tenant])?,
        TenantsCommand::Update {
            tenant,
            name,
            monthly_budget_usd,
        } => {
            if name.is_none() && monthly_budget_usd.is_none() {
                bail!("nothing to update: pass --name and/or --monthly-budget-usd");
            }
            let body = UpdateTenant {
                name,
                monthly_budget_usd: monthly_budget_usd
                    .map(|budget| (!budget.eq_ignore_ascii_case("none")).then_some(budget)),
            };
            admin
                .request(Method::PATCH, &["tenants", &tenant])?
                .json(&body)
        }
        TenantsCommand::Disable { tenant } => {
            admin.request(Method::POST, &["tenants", &tenant, "disable"])?
        }
        TenantsCommand::Enable { tenant } => {
            admin.request(Method::POST, &["tenants", &tenant, "enable"])?
        }
    };
    admin
        .print(request, |tenant: Tenant| {
            tenant_table(std::slice::from_ref(&tenant))
        })
        .await
}

pub async fn keys(args: &AdminArgs, command: KeysCommand) -> anyhow::Result<()> {
    let admin = Admin::new(args)?;
    let request = match command {
        KeysCommand::Create {
            tenant,
            name,
            models,
            expires_at,
        } => {
            // Parsed before any request so a typo never reaches the server.
            let expires_at = expires_at
                .as_deref()
                .map(|text| {
                    parse_expires_at(text).map_err(|error| anyhow!("--expires-at: {error}"))
                })
                .transpose()?;
            let body = CreateKey {
                name,
                allowed_models: models,
                expires_at,
            };
            admin
                .request(Method::POST, &["tenants", &tenant, "keys"])?
                .json(&body)
        }
        KeysCommand::Rotate { key_id } => {
            admin.request(Method::POST, &["keys", &key_id, "rotate"])?
        }
        KeysCommand::List { tenant } => {
            let request = admin.request(Method::GET, &["tenants", &tenant, "keys"])?;
            return admin
                .print(request, |list: List<Key>| key_table(&list.data))
                .await;
        }
        KeysCommand::Revoke { key_id } => {
            let request = admin.request(Method::POST, &["keys", &key_id, "revoke"])?;
            return admin
                .print(request, |key: Key| key_table(std::slice::from_ref(&key)))
                .await;
        }
    };
    admin.print(request, created_key).await
}

/// Limits as the admin API takes them; unset ones are omitted so the server
/// applies its defaults.
#[derive(Debug, Default, PartialEq, Serialize)]
struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    requests_per_minute: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_per_minute: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_per_day: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrent: Option<u64>,
}

#[derive(Serialize)]
struct CreateTenant {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    monthly_budget_usd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Limits>,
}

#[derive(Serialize)]
struct UpdateTenant {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Absent: unchanged; `Some(None)` is sent as `null`, which clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    monthly_budget_usd: Option<Option<String>>,
}

#[derive(Serialize)]
struct CreateKey {
    name: String,
    /// Empty means every model, which is the server's default when absent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_models: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

// Only the fields the tables show; the rest is ignored, so the CLI keeps
// working when the server adds fields.
#[derive(Debug, Deserialize)]
struct Tenant {
    id: String,
    name: String,
    status: String,
    monthly_budget_usd: Option<String>,
    created_at: i64,
}

#[derive(Debug, Deserialize)]
struct Key {
    id: String,
    name: String,
    prefix: String,
    status: String,
    allowed_models: Option<Vec<String>>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct KeyWithSecret {
    key: Key,
    secret: String,
}

#[derive(Debug, Deserialize)]
struct List<T> {
    data: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    message: String,
}

struct Admin {
    http: reqwest::Client,
    base: Url,
    token: String,
    json: bool,
}

impl Admin {
    fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let token = args
            .admin_token
            .as_deref()
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                anyhow!("no admin token: set LLMGW_ADMIN_TOKEN or pass --admin-token")
            })?;
        let base = Url::parse(args.admin_url.trim()).with_context(|| {
            format!(
                "invalid admin API URL {:?} (--admin-url / LLMGW_ADMIN_URL)",
                args.admin_url
            )
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base,
            token: token.to_owned(),
            json: args.json,
        })
    }

    /// Builds `{base}/admin/v1/{path…}`; segments are percent-encoded, so a
    /// tenant name with spaces or slashes stays one segment.
    fn request(&self, method: Method, path: &[&str]) -> anyhow::Result<RequestBuilder> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("admin API URL {} cannot have a path", self.base))?
            .pop_if_empty()
            .extend(["admin", "v1"])
            .extend(path);
        Ok(self.http.request(method, url).bearer_auth(&self.token))
    }

    /// Sends the request and prints the answer: the server's JSON under
    /// `--json`, else `render`'s table. A non-2xx answer is an error.
    async fn print<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        render: impl FnOnce(T) -> String,
    ) -> anyhow::Result<()> {
        let response = request.send().await.map_err(|error| {
            let what = if error.is_connect() {
                format!(
                    "cannot reach the admin API at {} (is `llmgw billing` running?)",
                    self.base
                )
            } else if error.is_timeout() {
                format!("the admin API at {} did not answer in time", self.base)
            } else {
                format!("request to the admin API at {} failed", self.base)
            };
            anyhow::Error::new(error).context(what)
        })?;
        let status = response.status();
        if !status.is_success() {
            // A proxy in between may answer without the JSON envelope; the
            // status alone still says what happened.
            let message = response.json::<ErrorEnvelope>().await.ok();
            bail!(api_error_message(
                status,
                message.map(|m| m.error.message).as_deref()
            ));
        }
        let output = if self.json {
            pretty_json(
                &response
                    .text()
                    .await
                    .context("reading the admin API response")?,
            )
        } else {
            render(
                response
                    .json()
                    .await
                    .context("decoding the admin API response")?,
            )
        };
        println!("{}", output.trim_end());
        Ok(())
    }
}

fn api_error_message(status: StatusCode, message: Option<&str>) -> String {
    let text = match message.map(str::trim) {
        Some(message) if !message.is_empty() => message,
        _ => status.canonical_reason().unwrap_or("unexpected response"),
    };
    let mut out = format!("admin API: {} {text}", status.as_u16());
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        out.push_str(" (check LLMGW_ADMIN_TOKEN / --admin-token)");
    }
    out
}

fn created_key(created: KeyWithSecret) -> String {
    format!(
        "{}\nSecret: {}\nStore this secret now: it will not be shown again.",
        key_table(std::slice::from_ref(&created.key)),
        created.secret
    )
}

fn tenant_table(tenants: &[Tenant]) -> String {
    let rows = tenants.iter().map(|tenant| {
        vec![
            tenant.name.clone(),
            tenant.id.clone(),
            tenant.status.clone(),
            tenant
                .monthly_budget_usd
                .clone()
                .unwrap_or_else(|| "unlimited".into()),
            format_ms(tenant.created_at),
        ]
    });
    render_table(&["NAME", "ID", "STATUS", "BUDGET USD", "CREATED"], rows)
}

fn key_table(keys: &[Key]) -> String {
    let or_never = |ms: Option<i64>| ms.map_or_else(|| "never".to_owned(), format_ms);
    let rows = keys.iter().map(|key| {
        let models = match key.allowed_models.as_deref() {
            None | Some([]) => "all".to_owned(),
            Some(models) => models.join(","),
        };
        vec![
            key.name.clone(),
            key.id.clone(),
            key.prefix.clone(),
            key.status.clone(),
            models,
            or_never(key.expires_at),
            or_never(key.last_used_at),
        ]
    });
    render_table(
        &[
            "NAME",
            "ID",
            "PREFIX",
            "STATUS",
            "MODELS",
            "EXPIRES",
            "LAST USED",
        ],
        rows,
    )
}

/// Left-aligned columns two spaces apart. Control characters in cells become
/// `?`: names come from the server and must not break the layout or drive the
/// terminal.
fn render_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let lines: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| (*h).to_owned()).collect())
        .chain(rows)
        .map(|row| {
            row.iter()
                .map(|cell| {
                    cell.chars()
                        .map(|c| if c.is_control() { '?' } else { c })
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut widths = vec![0; header.len()];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (cell, width) in line.iter().zip(&widths) {
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// Re-indents compact JSON the way `serde_json::to_string_pretty` does.
/// Hand-rolled because serde_json is not a normal dependency of this crate;
/// the text is the server's valid JSON, so tracking strings is enough.
fn pretty_json(raw: &str) -> String {
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    let mut out = String::with_capacity(raw.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0, false, false);
    let mut chars = raw.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                match chars.next_if(|c| matches!(c, '}' | ']')) {
                    Some(close) => out.push(close),
                    None => {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM UTC`.
fn format_ms(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// Unix milliseconds or `YYYY-MM-DD` (midnight UTC).
fn parse_expires_at(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let bytes = text.as_bytes();
    if !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) {
        let ms: i64 = text
            .parse()
            .map_err(|_| format!("{text} is out of range"))?;
        // 10^11 ms is 1973: anything smaller is almost surely unix seconds.
        if ms < 100_000_000_000 {
            return Err(format!("{text} looks like unix seconds; give milliseconds"));
        }
        return Ok(ms);
    }
    let is_date = text.split('-').map(str::len).eq([4, 2, 2])
        && text.bytes().all(|b| b == b'-' || b.is_ascii_digit());
    if !is_date {
        return Err(format!(
            "{text:?}: expected unix milliseconds or YYYY-MM-DD (midnight UTC)"
        ));
    }
    // Only ASCII digits remain, so slicing and parsing cannot fail.
    let field = |range: std::ops::Range<usize>| text[range].parse().unwrap_or(0);
    let (year, month, day) = (field(0..4), field(5..7), field(8..10));
    let days = days_from_civil(year, month, day);
    // Converting back catches impossible dates such as 2023-02-29 or month 13.
    if civil_from_days(days) != (year, month, day) {
        return Err(format!("{text} is not a calendar date"));
    }
    Ok(days * 86_400_000)
}

// Howard Hinnant's civil-date algorithms (proleptic Gregorian, UTC):
// https://howardhinnant.github.io/date_algorithms.html
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = shifted_month + if shifted_month < 10 { 3 } else { -9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
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
    fn pretty_json_matches_serde_json() {
        // Keys sorted: serde_json's Value sorts them, pretty_json keeps them.
        let raw = r#" {"data":[{"a":[],"b":{ },"c":[1, 2],"d":null,"e":"\\","id":"t\"1,:{"}],"n":{"x":{"y":true}}} "#;
        let value: serde_json::Value = serde_json::from_str(raw).unwrap();
        assert_eq!(
            pretty_json(raw),
            serde_json::to_string_pretty(&value).unwrap()
        );
        assert_eq!(pretty_json("[]"), "[]");
    }

    #[test]
    fn formats_unix_ms_as_utc_minutes() {
        assert_eq!(format_ms(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_ms(1_700_000_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(format_ms(-1), "1969-12-31 23:59 UTC");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn parses_expiry_forms() {
        assert_eq!(parse_expires_at("1767225600000"), Ok(JAN_1_2026));
        assert_eq!(parse_expires_at(" 2026-01-01 "), Ok(JAN_1_2026));
        assert_eq!(parse_expires_at("2024-02-29"), Ok(1_709_164_800_000));
        assert_eq!(parse_expires_at("1960-06-01"), Ok(-302_486_400_000));
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
            assert_eq!(
                parse_expires_at(bad).unwrap_err(),
                format!("{bad} is not a calendar date")
            );
        }
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
}
