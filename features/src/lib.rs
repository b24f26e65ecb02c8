//! The acceptance suite's own pieces: the cash-flow page served by nginx ([`page`]) and driven
//! in a browser ([`browser`]). The Gherkin scenarios in `tests/` run against both services
//! wired together, [`testkit::System`].

pub mod browser;
pub mod page;
