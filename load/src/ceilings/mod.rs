//! Ceilings: what this machine allows now, each measured in the same run as the figures divided
//! by it and reported as a figure of its own — a trivial axum handler under goose ([`axum`]),
//! pgbench running the ledger's own statement ([`pgbench`]), and the SQS emulator's send and
//! receive+delete rates ([`sqs`]).

pub mod axum;
pub mod pgbench;
pub mod sqs;
