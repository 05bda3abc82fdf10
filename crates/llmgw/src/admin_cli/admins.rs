//! `llmgw admins …`: admin credentials with roles (`admin`, `finance`,
//! `auditor`) for the admin API and the console, through the admin API.
//! A credential is printed once, when created.

use super::*;

#[derive(Debug, Clone, Copy, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Read usage, tenants (budgets) and exports.
    Finance,
    /// Read usage and the audit trails.
    Auditor,
}

#[derive(Debug, clap::Subcommand)]
pub enum AdminsCommand {
    /// Create an admin credential with a role; prints it once. Names are
    /// never reused, even after a revocation.
    Create {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List admin credentials (never their text).
    List,
    /// Revoke an admin credential (by id or name); its console sessions end.
    Revoke { credential: String },
}

#[derive(Serialize)]
struct NewCredential {
    name: String,
    role: Role,
}

#[derive(Debug, Deserialize)]
pub(super) struct Credential {
    id: String,
    name: String,
    role: String,
    prefix: String,
    status: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CreatedCredential {
    credential: Credential,
    secret: String,
}

pub async fn admins(args: &AdminArgs, command: AdminsCommand) -> anyhow::Result<()> {
    let admin = Admin::new(args)?;
    match command {
        AdminsCommand::Create { name, role } => {
            let request = admin
                .request(Method::POST, &["admins"])?
                .json(&NewCredential { name, role });
            let console = console_url(&admin.base);
            admin
                .print(request, |created: CreatedCredential| {
                    created_credential(&created, &console)
                })
                .await
        }
        AdminsCommand::List => {
            let request = admin.request(Method::GET, &["admins"])?;
            admin
                .print(request, |list: List<Credential>| {
                    credential_table(&list.data)
                })
                .await
        }
        AdminsCommand::Revoke { credential } => {
            let request = admin.request(Method::POST, &["admins", &credential, "revoke"])?;
            admin
                .print(request, |revoked: Credential| {
                    credential_table(std::slice::from_ref(&revoked))
                })
                .await
        }
    }
}

/// `{admin url}/ui/`, where the console is.
fn console_url(base: &Url) -> String {
    format!("{}/ui/", base.as_str().trim_end_matches('/'))
}

pub(super) fn created_credential(created: &CreatedCredential, console: &str) -> String {
    format!(
        "{}\nCredential: {}\nStore it now: it will not be shown again. Sign in to the console at \
         {console} with it, or use it as LLMGW_ADMIN_TOKEN for the CLI.",
        credential_table(std::slice::from_ref(&created.credential)),
        created.secret
    )
}

pub(super) fn credential_table(credentials: &[Credential]) -> String {
    let rows = credentials.iter().map(|credential| {
        vec![
            credential.name.clone(),
            credential.id.clone(),
            credential.role.clone(),
            credential.prefix.clone(),
            credential.status.clone(),
            format_ms(credential.created_at),
            credential
                .last_used_at
                .map_or_else(|| "never".to_owned(), format_ms),
        ]
    });
    render_table(
        &[
            "NAME",
            "ID",
            "ROLE",
            "PREFIX",
            "STATUS",
            "CREATED",
            "LAST USED",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // panicking is how tests fail

    use super::*;

    #[test]
    fn created_credential_is_printed_once_with_where_to_use_it() {
        let created: CreatedCredential = serde_json::from_str(
            r#"{"credential":{"id":"c1","name":"alice","role":"finance","prefix":"sk-llmgw-admin-AbCd",
                "status":"active","created_at":0,"last_used_at":null,"revoked_at":null},
                "secret":"sk-llmgw-admin-secret"}"#,
        )
        .unwrap();
        let base = Url::parse("http://127.0.0.1:8090").unwrap();
        let text = created_credential(&created, &console_url(&base));
        assert_eq!(text.matches("sk-llmgw-admin-secret").count(), 1, "{text}");
        assert!(text.contains("http://127.0.0.1:8090/ui/"), "{text}");
        assert!(
            text.starts_with(
                "NAME   ID  ROLE     PREFIX               STATUS  CREATED               LAST USED\n\
             alice  c1  finance  sk-llmgw-admin-AbCd  active  1970-01-01 00:00 UTC  never\n"
            ),
            "{text}"
        );
    }
}
