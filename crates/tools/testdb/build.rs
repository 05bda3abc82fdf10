//! `sqlx::migrate!` embeds the migration files at compile time but only
//! notices changes to files it has seen: a new migration must rebuild too.

fn main() {
    println!("cargo:rerun-if-changed=../../../migrations/billing/postgres");
}
