//! The load suite: goose scenarios against the platform, each figure printed beside the ceiling
//! it is compared with, measured in the same run on the same machine.
//!
//! - [`kit`]: what every scenario uses (goose glue, target, writer, stats, CPU meter, report);
//! - [`ceilings`]: what this machine allows now (axum, pgbench, the SQS emulator);
//! - [`scenarios`]: one file or folder per scenario, each using the kit and the ceilings only;
//! - [`suite`]: the scenarios that run against one target, in the order asked (`load all`).

pub mod ceilings;
pub mod kit;
pub mod scenarios;
pub mod suite;
