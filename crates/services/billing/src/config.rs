//! Billing configuration: the `billing:` section of the gateway config.
//!
//! ```yaml
//! billing:
//!   listen: 127.0.0.1:8083             # gRPC (LookupKey) and GET /metrics
//!   admin_listen: 127.0.0.1:8090       # the admin HTTP API
//!   database_url: postgres://llmgw@db:5432/llmgw   # $DATABASE_URL overrides it
//!   database_password_file: /run/secrets/postgres_password   # the password, not in the URL
//!   data_dir: ./data                   # SQLite lives here when no database_url
//!   admin_token_env: LLMGW_ADMIN_TOKEN
//!   admin_token_file: /run/secrets/llmgw-admin-token
//!   migrate_on_start: true
//!   console: {enabled: true, session_ttl_secs: 28800, session_idle_secs: 1800, secure_cookies: false}
//! ```
//!
//! `policy` is the config file's top-level `policy:` section, copied here by
//! the binary: the default policies and word lists billing serves under the
//! database's.
//!
//! The admin token is deliberately not a config field: config files get
//! committed, pasted and printed; a token belongs in the environment or a
//! secrets file.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Shorter tokens are guessable by anyone who can reach the admin port.
const MIN_ADMIN_TOKEN_CHARS: usize = 16;

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address (used by the binary; `run` takes bound
    /// listeners). `GET /metrics` is served on the same port over HTTP/1.
    pub listen: SocketAddr,
    /// The admin HTTP API. Loopback by default: reaching it from elsewhere
    /// is a decision to make explicitly (and to put behind TLS).
    pub admin_listen: SocketAddr,
    /// The admin listener's connection limits (header size and read
    /// timeout, idle timeout, HTTP/2 streams, open connections), as the
    /// edge's `http` (`llmgw_http_serve::HttpLimits`).
    pub admin_http: llmgw_http_serve::HttpLimits,
    /// `postgres://...` or `sqlite://PATH`. The `DATABASE_URL`
    /// environment variable, when set and not empty, overrides the file (the
    /// binary's configuration layers); unset: the SQLite file `{data_dir}/llmgw.db`,
    /// fine for one replica.
    pub database_url: Option<String>,
    /// A file holding the Postgres password (surrounding whitespace
    /// ignored), put into `database_url`'s user part at start: the same
    /// secret file the database container is given, and no password in
    /// the URL, the config file or the environment.
    pub database_password_file: Option<PathBuf>,
    /// Where the default SQLite database lives; created if missing.
    pub data_dir: PathBuf,
    /// The environment variable holding the admin token.
    pub admin_token_env: String,
    /// A file holding the admin token (surrounding whitespace ignored). When
    /// set it wins over `admin_token_env`: it is the more explicit choice.
    pub admin_token_file: Option<PathBuf>,
    /// Apply pending migrations at start. Turn off when migrations run as a
    /// separate deployment step (`llmgw migrate`).
    pub migrate_on_start: bool,
    /// The config file's content policies (filled from the top-level
    /// `policy:` section): the default policy, and policies and word lists
    /// the database's of the same name override. Served by
    /// `Policies.GetPolicies` merged with the database.
    #[serde(skip)]
    pub policy: llmgw_policy::PolicySource,
    /// The web console on the admin listener (`/ui/`).
    pub console: crate::console::ConsoleConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            admin_http: llmgw_http_serve::HttpLimits::default(),
            database_url: None,
            database_password_file: None,
            data_dir: PathBuf::from("./data"),
            admin_token_env: "LLMGW_ADMIN_TOKEN".to_owned(),
            admin_token_file: None,
            migrate_on_start: true,
            policy: llmgw_policy::PolicySource::default(),
            console: crate::console::ConsoleConfig::default(),
        }
    }
}

/// By hand, so a password in `database_url` never reaches a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("admin_http", &self.admin_http)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("database_password_file", &self.database_password_file)
            .field("data_dir", &self.data_dir)
            .field("admin_token_env", &self.admin_token_env)
            .field("admin_token_file", &self.admin_token_file)
            .field("migrate_on_start", &self.migrate_on_start)
            // Names only: word lists can hold 100k terms.
            .field("policy.default", &self.policy.default)
            .field("policy.policies", &self.policy.policies.keys())
            .field("policy.word_lists", &self.policy.word_lists.keys())
            .field("console", &self.console)
            .finish()
    }
}

impl Config {
    /// What is wrong with this section on its own, every problem at once,
    /// each naming its setting relative to `billing:`.
    pub fn validate(&self) -> Vec<String> {
        // `listen` and `admin_listen` are checked by the binary, with every
        // other listener of the process.
        let mut problems = Vec::new();
        if let Some(url) = self.database_url.as_deref().filter(|url| !url.is_empty())
            && !["postgres://", "postgresql://", "sqlite:"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
        {
            problems.push(format!(
                "database_url: {:?} is neither postgres://... nor sqlite:...",
                redact_url(url)
            ));
        }
        // Without a database_url here the check waits for the start of
        // billing (`resolve_database_url`): the other services share this
        // file but not billing's DATABASE_URL.
        if self.database_password_file.is_some()
            && let Some(url) = self.database_url.as_deref().filter(|url| !url.is_empty())
            && !((url.starts_with("postgres://") || url.starts_with("postgresql://"))
                && url_user(url).is_some())
        {
            problems.push(
                "database_password_file: needs a database_url of the form postgres://USER@HOST/DB"
                    .to_owned(),
            );
        }
        if self.admin_token_env.is_empty() {
            problems.push("admin_token_env: must not be empty".to_owned());
        }
        problems.extend(self.console.validate());
        problems.extend(
            self.admin_http
                .validate()
                .into_iter()
                .map(|problem| format!("admin_http.{problem}")),
        );
        problems
    }

    /// Whether the admin token configured (file or environment variable)
    /// can be read and is long enough; checked where billing runs.
    pub fn admin_token_problem(&self) -> Option<String> {
        load_admin_token(self)
            .err()
            .map(|error| format!("{error:#}"))
    }

    /// The database to connect to: `database_url` (with the password from
    /// `database_password_file`, if set), else a SQLite file in `data_dir`
    /// (the directory is created).
    pub fn resolve_database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = self.database_url.as_deref().filter(|url| !url.is_empty()) {
            let Some(path) = &self.database_password_file else {
                return Ok(url.to_owned());
            };
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading billing.database_password_file {path:?}"))?;
            let password = text.trim();
            anyhow::ensure!(
                !password.is_empty(),
                "billing.database_password_file {path:?} is empty"
            );
            return with_password(url, password).with_context(|| {
                format!(
                    "billing.database_password_file needs a database_url with a user, not {:?}",
                    redact_url(url)
                )
            });
        }
        if let Some(path) = &self.database_password_file {
            anyhow::bail!(
                "billing.database_password_file ({path:?}) is set but no database_url \
                 (or DATABASE_URL) names the Postgres database it is for"
            );
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating billing.data_dir {:?}", self.data_dir))?;
        Ok(format!(
            "sqlite://{}",
            self.data_dir.join("llmgw.db").display()
        ))
    }
}

/// The admin token, kept only as its SHA-256 digest: comparing digests is
/// constant-time whatever the lengths, and the plain token never sits in
/// memory longer than start-up.
#[derive(Clone)]
pub(crate) struct AdminToken {
    digest: [u8; 32],
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    pub(crate) fn new(token: &str) -> AdminToken {
        AdminToken {
            digest: sha256(token.as_bytes()),
        }
    }

    /// The token's id in the admin trail: `admin:` and the first 12 hex
    /// digits of its SHA-256. Names which token acted (after a rotation the
    /// id changes) without revealing anything usable.
    pub(crate) fn id(&self) -> String {
        let hex: String = self.digest[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!("admin:{hex}")
    }

    /// Whether `candidate` is the token, in time independent of where (and
    /// whether) they differ.
    pub(crate) fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(&self.digest, &sha256(candidate))
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares every byte, never stopping early, so timing does not reveal the
/// length of the matching prefix. `black_box` keeps the optimiser from
/// turning the fold back into an early exit.
pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// Reads the admin token: `admin_token_file` if set, else the environment
/// variable `admin_token_env`. `None` disables the admin API. A token that
/// is configured but unreadable, empty or short fails the start.
pub(crate) fn load_admin_token(config: &Config) -> anyhow::Result<Option<AdminToken>> {
    let (token, source) = if let Some(path) = &config.admin_token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading billing.admin_token_file {path:?}"))?;
        let token = text.trim().to_owned();
        anyhow::ensure!(
            !token.is_empty(),
            "billing.admin_token_file {path:?} is empty"
        );
        (token, format!("file {path:?}"))
    } else {
        match std::env::var(&config.admin_token_env) {
            Ok(value) if !value.trim().is_empty() => (
                value.trim().to_owned(),
                format!("environment variable {}", config.admin_token_env),
            ),
            _ => return Ok(None),
        }
    };
    anyhow::ensure!(
        token.chars().count() >= MIN_ADMIN_TOKEN_CHARS,
        "the admin token from {source} is too short: at least {MIN_ADMIN_TOKEN_CHARS} characters \
         (generate one with `openssl rand -hex 32`)"
    );
    Ok(Some(AdminToken::new(&token)))
}

/// The user of `scheme://user[:password]@host/...`, if the URL names one.
fn url_user(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    (!user.is_empty()).then_some(user)
}

/// `url` with `password` (percent-encoded) as its user's password, replacing
/// any password it had.
fn with_password(url: &str, password: &str) -> anyhow::Result<String> {
    let user = url_user(url).context("no user in the URL")?;
    let (scheme, rest) = url.split_once("://").context("not a URL")?;
    let host_start = rest.find('@').map_or(0, |at| at + 1);
    let encoded: String = password
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect();
    Ok(format!(
        "{scheme}://{user}:{encoded}@{}",
        &rest[host_start..]
    ))
}

/// `scheme://user:password@host/...` → `scheme://user:***@host/...`, for
/// logs and errors. URLs without a password come back unchanged.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://llmgw:s3cr3t@db:5432/llmgw?sslmode=require"),
            "postgres://llmgw:***@db:5432/llmgw?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(
            redact_url("sqlite://./data/llmgw.db"),
            "sqlite://./data/llmgw.db"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        let config = Config {
            database_url: Some("postgres://u:hunter2@h/d".to_owned()),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn password_file_goes_into_the_url() {
        let dir = std::env::temp_dir().join(format!("llmgw-billing-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("postgres_password");
        std::fs::write(&path, "p@ss:w/rd %\n").unwrap();
        let config = Config {
            database_url: Some("postgres://llmgw:old@db:5432/llmgw?sslmode=require".to_owned()),
            database_password_file: Some(path.clone()),
            ..Config::default()
        };
        assert!(config.validate().is_empty());
        assert_eq!(
            config.resolve_database_url().unwrap(),
            "postgres://llmgw:p%40ss%3Aw%2Frd%20%25@db:5432/llmgw?sslmode=require"
        );
        std::fs::write(&path, " \n").unwrap();
        assert!(config.resolve_database_url().is_err());
        let without_user = Config {
            database_url: Some("postgres://db:5432/llmgw".to_owned()),
            database_password_file: Some(path),
            ..Config::default()
        };
        assert_eq!(without_user.validate().len(), 1);
        let without_url = Config {
            database_url: None,
            ..without_user
        };
        assert!(
            without_url.validate().is_empty(),
            "other services share the file"
        );
        assert!(
            without_url.resolve_database_url().is_err(),
            "billing does not start"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn token_comparison() {
        let token = AdminToken::new("0123456789abcdef");
        // sha256("0123456789abcdef") = 9f9f5111f7b27a78...
        assert_eq!(token.id(), "admin:9f9f5111f7b2");
        assert!(token.matches(b"0123456789abcdef"));
        assert!(!token.matches(b"0123456789abcdeF"));
        assert!(!token.matches(b"0123456789abcdef0"));
        assert!(!token.matches(b""));
        assert!(!format!("{token:?}").contains("0123"));
    }

    #[test]
    fn short_or_empty_tokens_are_refused() {
        let dir = std::env::temp_dir().join(format!("llmgw-billing-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let config = Config {
            admin_token_file: Some(path.clone()),
            ..Config::default()
        };
        std::fs::write(&path, "short\n").unwrap();
        assert!(load_admin_token(&config).is_err());
        std::fs::write(&path, "  \n").unwrap();
        assert!(load_admin_token(&config).is_err());
        std::fs::write(&path, "  0123456789abcdef\n").unwrap();
        let token = load_admin_token(&config).unwrap().unwrap();
        assert!(token.matches(b"0123456789abcdef"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
