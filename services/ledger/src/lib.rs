//! The ledger ("controle de lançamentos"): records merchants' credits and debits, and their
//! reversals, in PostgreSQL, and publishes an `entry.recorded.v1` event for each through a
//! transactional outbox relayed to SQS. Recording never depends on SQS or on the consolidation.

pub mod config;
pub mod entries;
pub mod entry_request;
pub mod group_commit;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod reconcile;
pub mod routes;
pub mod startup;
pub mod zone;

pub use config::Config;
pub use startup::Application;

/// The ledger's schema, embedded: applied at start and used by the harness's test templates.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
