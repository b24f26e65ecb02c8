//! The scenarios, one file or folder each. Each uses the kit and the ceilings, never another
//! scenario.

pub mod capacity;
pub mod cost;
pub mod drain;
pub mod e2e_lag;
pub mod fire;
pub mod history;
pub mod ledger_writes;
pub mod replay;
pub mod sla;
pub mod soak;
