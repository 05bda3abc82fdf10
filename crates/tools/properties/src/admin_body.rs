//! The admin API's request bodies, checked as each handler does before it
//! touches the database ([`llmgw_billing::check_admin_body`]).
//!
//! Properties: nothing panics (a policy's regexes compile within bounds);
//! a refusal is a 400 in the OpenAI error shape whose `param` names a field
//! of the body or of the route; an accepted body is a JSON object.

use llmgw_billing::{AdminBody, check_admin_body};
use serde_json::Value;

use crate::Input;
use crate::error_body::assert_openai_error;

/// Input: the route (one byte), then the body.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let kind = AdminBody::ALL[usize::from(input.byte()) % AdminBody::ALL.len()];
    let body = input.rest();
    check_body(kind, body);
}

pub fn check_body(kind: AdminBody, body: &[u8]) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match check_admin_body(kind, body) {
        Ok(()) => {
            let blank = body.iter().all(u8::is_ascii_whitespace);
            assert!(
                parsed.as_ref().is_some_and(Value::is_object)
                    || (kind == AdminBody::Empty && blank),
                "{kind:?} accepted {:?}",
                String::from_utf8_lossy(body)
            );
        }
        Err((status, reply)) => {
            assert_eq!(
                status.as_u16(),
                400,
                "{kind:?}: {}",
                String::from_utf8_lossy(&reply)
            );
            let Some(param) = assert_openai_error(&reply) else {
                return;
            };
            let field = param.split(['.', '[']).next().unwrap_or_default();
            // An unknown field is named as sent, dots and brackets included
            // (found by the admin_body fuzz target: `"allowed_model."`).
            let in_body = parsed
                .as_ref()
                .and_then(Value::as_object)
                .is_some_and(|object| object.contains_key(field) || object.contains_key(&param));
            assert!(
                in_body || fields(kind).contains(&field),
                "{kind:?}: param {param:?} names no field"
            );
        }
    }
}

/// The fields each body may have.
pub fn fields(kind: AdminBody) -> &'static [&'static str] {
    match kind {
        AdminBody::CreateTenant | AdminBody::UpdateTenant => {
            &["name", "monthly_budget_usd", "limits", "policy"]
        }
        AdminBody::CreateKey | AdminBody::UpdateKey => {
            &["name", "allowed_models", "limits", "expires_at"]
        }
        AdminBody::Empty => &[],
        AdminBody::Terms => &["terms"],
        AdminBody::Policy => &["rules", "audit_excerpts"],
    }
}
