//! What the services' tests, the acceptance suite (`features/`) and the load suite (`load/`)
//! share, written once:
//!
//! - [`config`]: each service's test configuration on a harness scope;
//! - [`system`]: both services wired together in-process ([`System`]), with fault proxies,
//!   restarts and key rotation;
//! - [`cluster`]: both services as supervised processes behind the gateway, on given scopes;
//! - [`books`]: the ledger-versus-consolidation books check on [`DayDigest`]s;
//! - [`history`]: the clients' history of a chaos run, recorded and checked (monotonic reads,
//!   read validity, acknowledged entries listed);
//! - [`stats`]: percentiles and the coordinated-omission back-fill;
//! - [`running`]: a service running in-process, stoppable ([`Running`]);
//! - [`queue`]: messages put on an entries queue by hand;
//! - [`probe`]: a service's `/metrics` and `/openapi.json`;
//! - [`logs`]: the services' log lines captured in-process (the consumer's retries).
//!
//! What a service is told to trust an emulated identity provider is the harness's
//! (`IdentityProvider::auth_config`), and so is the readiness probe
//! (`harness::services::wait_ready`): the harness needs both itself.
//!
//! [`DayDigest`]: cashflow_contracts::digest::DayDigest

#![forbid(unsafe_code)]

pub mod books;
pub mod cluster;
pub mod config;
pub mod history;
pub mod logs;
pub mod probe;
pub mod queue;
pub mod running;
pub mod stats;
pub mod system;

pub use books::{Books, DayTotals, Difference};
pub use cluster::{ClusterPlan, migrated_scopes};
pub use config::{consolidation_config, ledger_config};
pub use running::Running;
pub use system::{Links, Placement, System, TokenSource};
