//! The consolidation's integration tests, against real PostgreSQL, Redis and LocalStack SQS and
//! the emulated identity provider, through the harness.

// The tests' futures hold the whole application (its request, consumer and reconciler tasks):
// deeper than rustc's default layout query depth allows in a cold build.
#![recursion_limit = "256"]

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
