//! The cash-flow platform's test and local-run harness.
//!
//! It runs the real dependencies — PostgreSQL, Redis and SQS (LocalStack or moto) — as containers
//! or local processes, or uses ones given in the environment (`external`); gives each test its own
//! database, queue pair and Redis key prefix ([`Scope`]); emulates the identity provider
//! ([`IdentityProvider`]); injects faults ([`Fault`]), network faults included, through a
//! proxy on each service→dependency link ([`FaultProxy`], [`NetFault`]), and SQS answering as
//! AWS does when it degrades, through a layer in front of the emulator ([`SqsFaults`]); and runs
//! the services as a supervised cluster of replicas behind the nginx gateway ([`cluster`]), as
//! `harness up` does.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let stack = harness::shared().await?;
//! let scope = stack.scope().await?;
//! let token = stack.identity().token().merchant("m1").scope("entries:write").mint()?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod cluster;
pub mod cpu;
pub mod failover;
pub mod gateway;
pub mod identity;
pub mod lease;
pub mod login;
pub mod netfault;
pub mod page;
pub mod paths;
pub mod process;
pub mod rotation;
pub mod scope;
pub mod service;
pub mod services;
pub mod sqs;
pub mod sqs_faults;
pub mod stack;
pub mod tokens;
pub mod wait;

pub use backend::{BackendKind, Dependency, Endpoints, Fault};
pub use identity::{IdentityProvider, IssuerKeys, TokenFlaw};
pub use netfault::{FaultProxy, Link, NetFault};
pub use rotation::RotatingIdentity;
pub use scope::{Scope, ScopeOptions};
pub use service::Service;
pub use sqs_faults::SqsFaults;
pub use stack::{Stack, StackOptions};
pub use wait::eventually;

use tokio::sync::OnceCell;

/// The stack shared by every test of this process, started on first use. Its processes end with
/// the process (see [`process`]), also when a test panics. Under `cargo nextest run` (whose
/// setup script runs `harness shared-deps start`) it uses the dependencies that serve the whole
/// run, named by the lease in `HARNESS_SHARED_LEASE`, instead of starting its own.
pub async fn shared() -> anyhow::Result<&'static Stack> {
    static SHARED: OnceCell<Stack> = OnceCell::const_new();
    SHARED
        .get_or_try_init(|| async {
            // Nobody stops the shared stack's PostgreSQL: its data can live in memory.
            let options = match lease::from_env()? {
                Some(endpoints) => StackOptions::default().with_external(endpoints),
                None => StackOptions::default().in_memory(),
            };
            Stack::start(options).await
        })
        .await
}
