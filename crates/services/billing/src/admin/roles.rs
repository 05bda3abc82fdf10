//! Which role may call which admin route. Every change (any method but GET
//! and HEAD) is for `admin` only; reads are listed per route below. A route
//! missing from the list is `admin` only, and a test checks that every
//! served route is listed, so a new route is never open by accident.

use http::Method;

use crate::store::Role;

/// Who may read (GET) a route, besides `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readers {
    AdminOnly,
    /// Budgets and tenants: `finance` too.
    Finance,
    /// The audit trails: `auditor` too.
    Auditor,
    /// Usage: `finance` and `auditor`.
    FinanceAndAuditor,
    /// Every signed-in role (the API description).
    Everyone,
}

/// Each route (as `routes()` declares its path) and who may read it.
pub(crate) const READERS: &[(&str, Readers)] = &[
    ("/admin/v1/tenants", Readers::Finance),
    ("/admin/v1/tenants/{tenant}", Readers::Finance),
    ("/admin/v1/tenants/{tenant}/disable", Readers::AdminOnly),
    ("/admin/v1/tenants/{tenant}/enable", Readers::AdminOnly),
    ("/admin/v1/tenants/{tenant}/keys", Readers::AdminOnly),
    ("/admin/v1/keys/{key}", Readers::AdminOnly),
    ("/admin/v1/keys/{key}/revoke", Readers::AdminOnly),
    ("/admin/v1/keys/{key}/rotate", Readers::AdminOnly),
    ("/admin/v1/usage", Readers::FinanceAndAuditor),
    (
        "/admin/v1/usage/requests/{request_id}",
        Readers::FinanceAndAuditor,
    ),
    ("/admin/v1/usage/export", Readers::FinanceAndAuditor),
    ("/admin/v1/audit", Readers::Auditor),
    ("/admin/v1/audit/admin", Readers::Auditor),
    ("/admin/v1/policies", Readers::AdminOnly),
    ("/admin/v1/policies/{name}", Readers::AdminOnly),
    ("/admin/v1/word-lists", Readers::AdminOnly),
    ("/admin/v1/word-lists/{name}", Readers::AdminOnly),
    ("/admin/v1/word-lists/{name}/terms", Readers::AdminOnly),
    (
        "/admin/v1/word-lists/{name}/terms:remove",
        Readers::AdminOnly,
    ),
    ("/admin/v1/admins", Readers::AdminOnly),
    ("/admin/v1/admins/{credential}/revoke", Readers::AdminOnly),
    ("/admin/v1/openapi.json", Readers::Everyone),
];

fn readers(route: &str) -> Readers {
    READERS
        .iter()
        .find(|(path, _)| *path == route)
        .map_or(Readers::AdminOnly, |(_, readers)| *readers)
}

/// Whether `role` may call `method` on the route declared as `route`.
pub(crate) fn allows(role: Role, method: &Method, route: &str) -> bool {
    if role == Role::Admin {
        return true;
    }
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    match (readers(route), role) {
        (Readers::Everyone, _)
        | (Readers::Finance | Readers::FinanceAndAuditor, Role::Finance)
        | (Readers::Auditor | Readers::FinanceAndAuditor, Role::Auditor) => true,
        (
            Readers::AdminOnly | Readers::Finance | Readers::Auditor | Readers::FinanceAndAuditor,
            _,
        ) => false,
    }
}

/// The roles that may call `method` on `route`, for the API description.
pub(crate) fn roles_for(method: &Method, route: &str) -> Vec<&'static str> {
    Role::ALL
        .into_iter()
        .filter(|role| allows(*role, method, route))
        .map(Role::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_route_is_listed_once() {
        let served: Vec<&str> = super::super::routes()
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        for path in &served {
            assert_eq!(
                READERS.iter().filter(|(listed, _)| listed == path).count(),
                1,
                "{path} must be listed exactly once in READERS"
            );
        }
        for (listed, _) in READERS {
            assert!(served.contains(listed), "{listed} is listed but not served");
        }
    }

    #[test]
    fn only_admin_changes_anything() {
        for (route, _) in READERS {
            for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
                assert!(allows(Role::Admin, &method, route));
                assert!(!allows(Role::Finance, &method, route), "{method} {route}");
                assert!(!allows(Role::Auditor, &method, route), "{method} {route}");
            }
        }
    }

    #[test]
    fn unknown_routes_are_admin_only() {
        assert!(!allows(Role::Finance, &Method::GET, "/admin/v1/new-route"));
        assert!(allows(Role::Admin, &Method::GET, "/admin/v1/new-route"));
    }
}
