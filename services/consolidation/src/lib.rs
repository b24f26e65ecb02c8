//! The daily consolidation ("consolidação diária"): consumes the ledger's `entry.recorded.v1`
//! events from SQS — retrying transient failures with exponential backoff and jitter, sending
//! what can never succeed to the DLQ — keeps each merchant's daily balances idempotently in
//! PostgreSQL, caches reads in Redis, and serves balances, reports and DLQ tooling over HTTP.
//! A reconciler compares its merchant-days with the ledger's digests and has the ledger replay
//! whatever the broker lost.

pub mod balances;
pub mod breaker;
pub mod cache;
pub mod config;
pub mod consumer;
pub mod dlq;
pub mod inflight;
pub mod ledger_client;
pub mod metrics;
pub mod openapi;
pub mod reconcile;
pub mod retention;
pub mod routes;
pub mod startup;

pub use config::Config;
pub use startup::Application;

/// The consolidation's schema, embedded: applied at start and used by the harness's templates.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
