//! Every admin request body checked as its handler checks it before it
//! touches the database, without one: the entry point of the fuzz targets
//! and property tests of the admin API's bodies.

use std::collections::BTreeMap;

use http::StatusCode;
use llmgw_policy::Policy;

use super::{body, keys, policies, tenants, word_lists};

/// The kinds of body the admin API takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminBody {
    /// `POST /admin/v1/tenants`
    CreateTenant,
    /// `PATCH /admin/v1/tenants/{tenant}`
    UpdateTenant,
    /// `POST /admin/v1/tenants/{tenant}/keys`
    CreateKey,
    /// `PATCH /admin/v1/keys/{key}`
    UpdateKey,
    /// The routes that take no body: disable, enable, revoke, rotate.
    Empty,
    /// `PUT /admin/v1/word-lists/{name}` and the term edits.
    Terms,
    /// `PUT /admin/v1/policies/{name}`, compiled with no word lists.
    Policy,
}

impl AdminBody {
    pub const ALL: [AdminBody; 7] = [
        AdminBody::CreateTenant,
        AdminBody::UpdateTenant,
        AdminBody::CreateKey,
        AdminBody::UpdateKey,
        AdminBody::Empty,
        AdminBody::Terms,
        AdminBody::Policy,
    ];
}

/// `Ok` when the handler would go on to the database; otherwise the status
/// and the JSON error body the client receives.
pub fn check_admin_body(kind: AdminBody, body: &[u8]) -> Result<(), (StatusCode, Vec<u8>)> {
    let checked = match kind {
        AdminBody::CreateTenant => tenants::new_tenant(body).map(drop),
        AdminBody::UpdateTenant => tenants::tenant_update(body).map(drop),
        AdminBody::CreateKey => keys::new_key(body).map(drop),
        AdminBody::UpdateKey => keys::key_update(body).map(drop),
        AdminBody::Empty => body::parse_empty(body),
        AdminBody::Terms => word_lists::terms(body).map(drop),
        AdminBody::Policy => policies::parse_spec(body).and_then(|spec| {
            policies::check_rules(&spec)?;
            Policy::compile("checked", &spec, &BTreeMap::new(), &[0u8; 32])
                .map(drop)
                .map_err(|error| policies::compile_error(&spec, &error))
        }),
    };
    checked.map_err(super::error::ApiError::into_reply)
}
