//! The ledger's integration tests, against real PostgreSQL, LocalStack SQS and the emulated
//! identity provider, through the harness.

mod auth;
mod faults;
mod group_commit;
mod helpers;
mod idempotency;
mod keys;
mod outbox;
mod reconcile;
mod record;
mod retention;
mod reversal;
mod supervision;
mod validation;
