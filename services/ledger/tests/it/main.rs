//! The ledger's integration tests, against real PostgreSQL, LocalStack SQS and the emulated
//! identity provider, through the harness.

mod auth;
mod helpers;
mod idempotency;
mod outbox;
mod reconcile;
mod record;
mod reversal;
mod validation;
