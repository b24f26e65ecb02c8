//! The harness's self-tests, against the real processes it runs.

mod dependencies;
mod faults;
mod identity;
mod isolation;
mod netfault;
mod orphans;
mod up;

/// Migrations used to exercise template databases.
pub static NOTES: sqlx::migrate::Migrator = sqlx::migrate!("tests/it/migrations");
