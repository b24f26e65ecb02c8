//! The cash-flow platform's test and local-run harness.
//!
//! It runs the real dependencies — PostgreSQL, Redis and LocalStack SQS — as local processes
//! (`native`), or uses ones given in the environment (`external`); gives each test its own
//! database, queue pair and Redis key prefix ([`Scope`]); emulates the identity provider
//! ([`IdentityProvider`]); and injects faults ([`Fault`]), network faults included, through a
//! proxy on each service→dependency link ([`FaultProxy`], [`NetFault`]), and SQS answering as
//! AWS does when it degrades, through a layer in front of the emulator ([`SqsFaults`]).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let stack = harness::shared().await?;
//! let scope = stack.scope().await?;
//! let token = stack.identity().token().merchant("m1").scope("entries:write").mint()?;
//! # Ok(()) }
//! ```

pub mod backend;
pub mod cli;
pub mod cpu;
pub mod gateway;
pub mod identity;
pub mod login;
pub mod netfault;
pub mod page;
pub mod paths;
pub mod process;
pub mod replicas;
pub mod rotation;
pub mod scope;
pub mod services;
pub mod sqs;
pub mod sqs_faults;
pub mod stack;
pub mod wait;

pub use backend::{BackendKind, Dependency, Endpoints, Fault};
pub use identity::{IdentityProvider, IssuerKeys, TokenFlaw};
pub use netfault::{FaultProxy, Link, NetFault, Service};
pub use rotation::RotatingIdentity;
pub use scope::{Scope, ScopeOptions};
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
            let options = match std::env::var_os(cli::LEASE_VAR) {
                Some(lease) => StackOptions::default()
                    .with_external(cli::read_lease(std::path::Path::new(&lease))?),
                None => StackOptions::default().with_native(
                    backend::native::NativeOptions::default().with_postgres_in_memory(),
                ),
            };
            Stack::start(options).await
        })
        .await
}
