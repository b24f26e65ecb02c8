//! The harness's self-tests, against the real processes it runs.

mod cluster;
mod dependencies;
mod faults;
mod gateway;
mod identity;
mod isolation;
mod login;
mod netfault;
mod orphans;
mod running_up;
mod shared_deps;
mod sqs_emulators;
mod sqs_faults;
mod traffic;
mod up;
mod up_again;

/// Migrations used to exercise template databases.
pub static NOTES: sqlx::migrate::Migrator = sqlx::migrate!("tests/it/migrations");
