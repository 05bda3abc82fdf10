//! `llmgw tenants …`, `llmgw keys …`, `llmgw usage …`, `llmgw audit …`,
//! `llmgw policies …`, `llmgw word-lists …` and `llmgw admins …`: a thin
//! client of the billing service's admin HTTP API. Rendering, dates and error messages
//! are pure functions so they are unit-tested without a server.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Admin API base URL.
    #[arg(long, env = "LLMGW_ADMIN_URL", default_value = "http://127.0.0.1:8090")]
    pub admin_url: String,
    /// Admin token or admin credential (also read from LLMGW_ADMIN_TOKEN).
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
        /// Content policy (default: the config file's default policy).
        #[arg(long)]
        policy: Option<String>,
    },
    /// List tenants.
    List,
    /// Show one tenant (by id or name).
    Get { tenant: String },
    /// Rename a tenant, change its budget or its content policy.
    Update {
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        /// New monthly budget in USD; `none` removes the budget.
        #[arg(long)]
        monthly_budget_usd: Option<String>,
        /// Content policy; `--policy ""` (or --no-policy) returns the tenant
        /// to the default policy.
        #[arg(long, conflicts_with = "no_policy")]
        policy: Option<String>,
        /// Return the tenant to the default policy.
        #[arg(long)]
        no_policy: bool,
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
            policy,
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
                policy,
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
            policy,
            no_policy,
        } => {
            let policy = tenant_policy(policy, no_policy);
            if name.is_none() && monthly_budget_usd.is_none() && policy.is_none() {
                bail!(
                    "nothing to update: pass --name, --monthly-budget-usd, --policy or --no-policy"
                );
            }
            let body = UpdateTenant {
                name,
                monthly_budget_usd: monthly_budget_usd
                    .map(|budget| (!budget.eq_ignore_ascii_case("none")).then_some(budget)),
                policy,
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

/// `--policy P` sets, `--policy ""` or `--no-policy` clears (sent as null),
/// neither leaves the policy alone.
fn tenant_policy(policy: Option<String>, no_policy: bool) -> Option<Option<String>> {
    if no_policy {
        return Some(None);
    }
    policy.map(|policy| (!policy.trim().is_empty()).then_some(policy))
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
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
}

#[derive(Serialize)]
struct UpdateTenant {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Absent: unchanged; `Some(None)` is sent as `null`, which clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    monthly_budget_usd: Option<Option<String>>,
    /// As the budget: `Some(None)` (null) returns the tenant to the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<Option<String>>,
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
    #[serde(default)]
    policy: Option<String>,
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

    /// `{base}/admin/v1/{path…}?{query}`, the query's `None` values left out.
    fn query(
        &self,
        path: &[&str],
        query: &[(&str, Option<&str>)],
    ) -> anyhow::Result<RequestBuilder> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("admin API URL {} cannot have a path", self.base))?
            .pop_if_empty()
            .extend(["admin", "v1"])
            .extend(path);
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                if let Some(value) = value {
                    pairs.append_pair(name, value);
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(self.http.get(url).bearer_auth(&self.token))
    }

    /// Sends the request and prints the answer's body as it is (CSV).
    async fn print_text(&self, request: RequestBuilder) -> anyhow::Result<()> {
        let response = self.send(request).await?;
        let text = response
            .text()
            .await
            .context("reading the admin API response")?;
        print!("{text}");
        Ok(())
    }

    /// Sends the request; a non-2xx answer is an error with the server's
    /// message.
    async fn send(&self, request: RequestBuilder) -> anyhow::Result<reqwest::Response> {
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
        Ok(response)
    }

    /// Sends the request and prints the answer: the server's JSON under
    /// `--json`, else `render`'s table. A non-2xx answer is an error.
    async fn print<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        render: impl FnOnce(T) -> String,
    ) -> anyhow::Result<()> {
        let response = self.send(request).await?;
        let output = if self.json {
            let value: serde_json::Value = response
                .json()
                .await
                .context("reading the admin API response")?;
            serde_json::to_string_pretty(&value)?
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

mod admins;
mod audit;
mod policies;
mod render;
#[cfg(test)]
mod tests;
mod usage;
mod word_lists;

pub use admins::{AdminsCommand, admins};
pub use audit::{AuditCommand, AuditFilters, audit};
pub use policies::{PoliciesCommand, policies};
use render::*;
pub use usage::{UsageArgs, usage};
pub use word_lists::{WordListsCommand, word_lists};
