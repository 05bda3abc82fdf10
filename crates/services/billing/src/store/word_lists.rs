//! Word lists in the database (see `policies.rs` for the rules every
//! policy change follows: revision first, audit row in the transaction).
//! One row per term, so lists of 100k terms are replaced with batched
//! inserts and edited a few terms at a time without rewriting them.

use std::collections::BTreeSet;

use llmgw_policy::PolicySpec;
use serde::Serialize;
use sqlx::QueryBuilder;

use super::admin_audit::{Actor, Change, record_change};
use super::policies::bump_policy_revision;
use super::{BeginSnapshot as _, BeginWrite as _, Store, StoreError, now_ms};

/// Most terms one word list may hold.
pub const MAX_TERMS: usize = 1_000_000;
/// Longest term, in bytes.
pub const MAX_TERM_BYTES: usize = 256;
/// Terms per INSERT or DELETE statement: 2 binds each (INSERT) stays under
/// SQLite's 32766 and Postgres's 65535.
const TERMS_PER_STATEMENT: usize = 5_000;
/// Terms named in an `admin_audit` row of an add or remove; beyond that
/// only their number (a row must stay small).
const AUDITED_TERMS: usize = 100;

/// A word list stored in the database, without its terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WordListInfo {
    pub name: String,
    pub term_count: u64,
    pub updated_at: i64,
}

/// How to change some of a word list's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermEdit {
    Add,
    Remove,
}

impl TermEdit {
    fn action(self) -> &'static str {
        match self {
            TermEdit::Add => "word_list.add_terms",
            TermEdit::Remove => "word_list.remove_terms",
        }
    }
}

/// The audit record of a word list: its size, and for an add or remove the
/// terms given (the first [`AUDITED_TERMS`] of them).
#[derive(Serialize)]
struct ListState<'a> {
    term_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    terms: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    terms_given: Option<usize>,
}

/// A word list's terms as stored: trimmed, unique, in byte order. Refuses
/// empty or over-long terms and control characters (a term per line must
/// stay a term per line).
pub fn normalize_terms(terms: Vec<String>) -> Result<Vec<String>, StoreError> {
    let mut out = BTreeSet::new();
    for (index, term) in terms.into_iter().enumerate() {
        let term = term.trim();
        let problem = if term.is_empty() {
            Some("is empty".to_owned())
        } else if term.len() > MAX_TERM_BYTES {
            Some(format!("is longer than {MAX_TERM_BYTES} bytes"))
        } else if term.chars().any(char::is_control) {
            Some("holds a control character".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(StoreError::InvalidField {
                field: format!("terms[{index}]"),
                message: format!("terms[{index}] {problem}"),
            });
        }
        out.insert(term.to_owned());
    }
    if out.len() > MAX_TERMS {
        return Err(StoreError::InvalidField {
            field: "terms".to_owned(),
            message: format!("a word list holds at most {MAX_TERMS} terms"),
        });
    }
    Ok(out.into_iter().collect())
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Store {
    /// The database's word lists (without terms), by name.
    pub async fn list_word_lists(&self) -> Result<Vec<WordListInfo>, StoreError> {
        let sql = "SELECT w.name, CAST(COUNT(t.term) AS BIGINT), w.updated_at \
             FROM word_lists w LEFT JOIN word_list_terms t ON t.list = w.name \
             GROUP BY w.name, w.updated_at ORDER BY w.name";
        let rows: Vec<(String, i64, i64)> =
            on_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(name, terms, updated_at)| WordListInfo {
                name,
                term_count: count(terms),
                updated_at,
            })
            .collect())
    }

    /// Word list `name` of the database with its terms (in byte order).
    pub async fn get_word_list(
        &self,
        name: &str,
    ) -> Result<Option<(WordListInfo, Vec<String>)>, StoreError> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin_snapshot().await?;
            let found: Option<(i64,)> =
                sqlx::query_as("SELECT updated_at FROM word_lists WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            match found {
                None => None,
                Some((updated_at,)) => {
                    let terms: Vec<(String,)> =
                        sqlx::query_as("SELECT term FROM word_list_terms WHERE list = $1")
                            .bind(name)
                            .fetch_all(&mut *tx)
                            .await?;
                    tx.commit().await?;
                    let mut terms: Vec<String> = terms.into_iter().map(|(t,)| t).collect();
                    terms.sort_unstable();
                    let info = WordListInfo {
                        name: name.to_owned(),
                        term_count: u64::try_from(terms.len()).unwrap_or(u64::MAX),
                        updated_at,
                    };
                    Some((info, terms))
                }
            }
        }))
    }

    /// Creates word list `name` or replaces all its terms with `terms`
    /// (already [`normalize_terms`]d); `true` if it was created.
    pub async fn put_word_list(
        &self,
        name: &str,
        terms: &[String],
        by: &Actor,
    ) -> Result<(WordListInfo, bool), StoreError> {
        let now = now_ms();
        let info = WordListInfo {
            name: name.to_owned(),
            term_count: u64::try_from(terms.len()).unwrap_or(u64::MAX),
            updated_at: now,
        };
        let previous = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            bump_policy_revision!(&mut *tx)?;
            let existed: Option<(i64,)> = sqlx::query_as(
                "SELECT CAST(COUNT(t.term) AS BIGINT) FROM word_lists w \
                 LEFT JOIN word_list_terms t ON t.list = w.name WHERE w.name = $1 GROUP BY w.name",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO word_lists (name, updated_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM word_list_terms WHERE list = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            for chunk in terms.chunks(TERMS_PER_STATEMENT) {
                let mut insert = QueryBuilder::new("INSERT INTO word_list_terms (list, term) ");
                insert.push_values(chunk, |mut values, term| {
                    values.push_bind(name).push_bind(term.as_str());
                });
                insert.build().execute(&mut *tx).await?;
            }
            let before = existed.map(|(terms,)| ListState {
                term_count: count(terms),
                terms: None,
                terms_given: None,
            });
            let after = ListState {
                term_count: info.term_count,
                terms: None,
                terms_given: None,
            };
            let change = Change::new(
                "word_list.put",
                format!("word_list:{name}"),
                before.as_ref(),
                Some(&after),
            )?;
            record_change!(&mut *tx, by, &change)?;
            tx.commit().await?;
            existed
        });
        Ok((info, previous.is_none()))
    }

    /// Adds or removes `terms` (already [`normalize_terms`]d) of word list
    /// `name`. A list only the config file defines is copied into the
    /// database first (the database's list replaces the file's, so editing
    /// must start from the file's terms). `None` if neither has the list.
    pub async fn edit_word_list(
        &self,
        name: &str,
        edit: TermEdit,
        terms: &[String],
        by: &Actor,
    ) -> Result<Option<WordListInfo>, StoreError> {
        let now = now_ms();
        let seed: Option<Vec<String>> = match self.defaults.word_lists.get(name) {
            Some(file_terms) => Some(normalize_terms(file_terms.clone())?),
            None => None,
        };
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            bump_policy_revision!(&mut *tx)?;
            let existed: Option<(i64,)> = sqlx::query_as(
                "SELECT CAST(COUNT(t.term) AS BIGINT) FROM word_lists w \
                 LEFT JOIN word_list_terms t ON t.list = w.name WHERE w.name = $1 GROUP BY w.name",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let before_count = match (existed, &seed) {
                (Some((terms,)), _) => count(terms),
                (None, None) => return Ok(None),
                (None, Some(seed)) => {
                    sqlx::query("INSERT INTO word_lists (name, updated_at) VALUES ($1, $2)")
                        .bind(name)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    for chunk in seed.chunks(TERMS_PER_STATEMENT) {
                        let mut insert =
                            QueryBuilder::new("INSERT INTO word_list_terms (list, term) ");
                        insert.push_values(chunk, |mut values, term| {
                            values.push_bind(name).push_bind(term.as_str());
                        });
                        insert.build().execute(&mut *tx).await?;
                    }
                    u64::try_from(seed.len()).unwrap_or(u64::MAX)
                }
            };
            for chunk in terms.chunks(TERMS_PER_STATEMENT) {
                let mut sql = match edit {
                    TermEdit::Add => {
                        let mut insert =
                            QueryBuilder::new("INSERT INTO word_list_terms (list, term) ");
                        insert.push_values(chunk, |mut values, term| {
                            values.push_bind(name).push_bind(term.as_str());
                        });
                        insert.push(" ON CONFLICT (list, term) DO NOTHING");
                        insert
                    }
                    TermEdit::Remove => {
                        let mut delete =
                            QueryBuilder::new("DELETE FROM word_list_terms WHERE list = ");
                        delete.push_bind(name).push(" AND term IN (");
                        let mut listed = delete.separated(", ");
                        for term in chunk {
                            listed.push_bind(term.as_str());
                        }
                        delete.push(")");
                        delete
                    }
                };
                sql.build().execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE word_lists SET updated_at = $2 WHERE name = $1")
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let (after_count,): (i64,) = sqlx::query_as(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM word_list_terms WHERE list = $1",
            )
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            let shown = &terms[..terms.len().min(AUDITED_TERMS)];
            let change = Change::new(
                edit.action(),
                format!("word_list:{name}"),
                Some(&ListState { term_count: before_count, terms: None, terms_given: None }),
                Some(&ListState {
                    term_count: count(after_count),
                    terms: Some(shown),
                    terms_given: Some(terms.len()),
                }),
            )?;
            record_change!(&mut *tx, by, &change)?;
            tx.commit().await?;
            Some(WordListInfo {
                name: name.to_owned(),
                term_count: count(after_count),
                updated_at: now,
            })
        }))
    }

    /// Deletes word list `name` from the database; `None` if it has none.
    /// [`StoreError::InUse`] if a policy in force (the database's, or the
    /// config file's not overridden) names it and the config file does not
    /// define it (else those policies fall back to the file's list).
    pub async fn delete_word_list(
        &self,
        name: &str,
        by: &Actor,
    ) -> Result<Option<WordListInfo>, StoreError> {
        let falls_back = self.defaults.word_lists.contains_key(name);
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            bump_policy_revision!(&mut *tx)?;
            let existed: Option<(i64, i64)> = sqlx::query_as(
                "SELECT CAST(COUNT(t.term) AS BIGINT), w.updated_at FROM word_lists w \
                 LEFT JOIN word_list_terms t ON t.list = w.name WHERE w.name = $1 \
                 GROUP BY w.name, w.updated_at",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((terms, updated_at)) = existed else {
                return Ok(None);
            };
            if !falls_back {
                let stored: Vec<(String, String)> =
                    sqlx::query_as("SELECT name, spec FROM policies")
                        .fetch_all(&mut *tx)
                        .await?;
                let users = users_of_list(self, &stored, name)?;
                if !users.is_empty() {
                    return Err(StoreError::InUse(format!(
                        "word list {name:?} is used by policies {users:?}: change them first"
                    )));
                }
            }
            // The terms go with it (ON DELETE CASCADE).
            sqlx::query("DELETE FROM word_lists WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let before = ListState { term_count: count(terms), terms: None, terms_given: None };
            let change = Change::new(
                "word_list.delete",
                format!("word_list:{name}"),
                Some(&before),
                None::<&ListState<'_>>,
            )?;
            record_change!(&mut *tx, by, &change)?;
            tx.commit().await?;
            Some(WordListInfo { name: name.to_owned(), term_count: count(terms), updated_at })
        }))
    }
}

/// The policies in force (`stored`: the database's, as name and spec JSON;
/// then the config file's not overridden) whose rules name word list `list`.
fn users_of_list(
    store: &Store,
    stored: &[(String, String)],
    list: &str,
) -> Result<Vec<String>, StoreError> {
    let uses = |spec: &PolicySpec| {
        spec.rules
            .iter()
            .any(|rule| rule.word_lists.iter().any(|name| name == list))
    };
    let mut users = Vec::new();
    for (name, json) in stored {
        let spec: PolicySpec = serde_json::from_str(json)
            .map_err(|error| sqlx::Error::Decode(format!("policy {name:?}: {error}").into()))?;
        if uses(&spec) {
            users.push(name.clone());
        }
    }
    for (name, spec) in &store.defaults.policies {
        if !stored.iter().any(|(stored, _)| stored == name) && uses(spec) {
            users.push(name.clone());
        }
    }
    users.sort();
    Ok(users)
}
