//! One step module per feature file (`tests/features/*.feature`), plus `common` for the steps
//! several features share. Everything is re-exported here so that modules can use each other's
//! helpers.

pub(crate) mod balances;
pub(crate) mod chaos;
pub(crate) mod common;
pub(crate) mod page;
pub(crate) mod reconcile;
pub(crate) mod recording;
pub(crate) mod resilience;
pub(crate) mod retry_dlq;
pub(crate) mod security;

#[allow(unused_imports)]
pub(crate) use balances::*;
#[allow(unused_imports)]
pub(crate) use chaos::*;
#[allow(unused_imports)]
pub(crate) use common::*;
#[allow(unused_imports)]
pub(crate) use page::*;
#[allow(unused_imports)]
pub(crate) use reconcile::*;
#[allow(unused_imports)]
pub(crate) use recording::*;
#[allow(unused_imports)]
pub(crate) use resilience::*;
#[allow(unused_imports)]
pub(crate) use retry_dlq::*;
#[allow(unused_imports)]
pub(crate) use security::*;
