//! The load suite: goose scenarios against the platform, each figure printed beside the ceiling
//! it is compared with, measured in the same run on the same machine.
//!
//! Coordinated omission: every goose run here uses `--co-mitigation average`: when a request
//! takes longer than a user's average cadence, goose back-fills the requests that user would
//! have sent meanwhile, so a stall shows in the percentiles instead of silently lowering the
//! rate. Both the raw and the mitigated p99 are reported.

pub mod ceilings;
pub mod drain;
pub mod fire;
pub mod history;
pub mod latency;
pub mod report;
pub mod scenarios;
pub mod soak;
pub mod target;
pub mod writer;

pub use report::Figure;
pub use target::Target;
