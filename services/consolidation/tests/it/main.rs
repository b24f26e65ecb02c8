//! The consolidation's integration tests, against real PostgreSQL, Redis and LocalStack SQS and
//! the emulated identity provider, through the harness.

mod api;
mod cache;
mod consume;
mod faults;
mod helpers;
mod history;
mod reconcile;
mod retention;
mod retry;
mod supervision;
