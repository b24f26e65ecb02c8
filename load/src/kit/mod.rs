//! What every scenario uses: the goose glue ([`goose`]), the target ([`target`]), the open-loop
//! writer ([`writer`]), statistics ([`stats`]), the CPU meter ([`cpu`]), an entry's journey
//! through the pipeline ([`journey`]), the services' configurations ([`services`]) and the
//! report ([`report`]). The kit imports no scenario and no ceiling.

pub mod cpu;
pub mod goose;
pub mod journey;
pub mod report;
pub mod services;
pub mod stats;
pub mod target;
pub mod writer;
