//! The ledger's integration tests, against real PostgreSQL, LocalStack SQS and the emulated
//! identity provider, through the harness.

// The tests' futures hold the whole application (its request, relay and group-commit tasks):
// deeper than rustc's default layout query depth allows in a cold build.
#![recursion_limit = "256"]

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
