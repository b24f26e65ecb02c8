//! The settings of `sla-under-fire` (its write rate is the command's `--write-rate`, which
//! `all` shares with capacity).

/// The scenario's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct FireArgs {
    /// Read rates of the sla-under-fire passes, in order (repeat the flag).
    #[arg(long = "fire-read-rate", default_values_t = [50, 500])]
    pub fire_read_rates: Vec<usize>,
    /// Merchants the sla-under-fire scenario writes to and reads (at least 1,000 by default so
    /// that caches really are invalidated).
    #[arg(long, default_value_t = 1000)]
    pub fire_merchants: usize,
    /// Quiet seconds before the first fault of a pass and after each fault window.
    #[arg(long, default_value_t = 15)]
    pub fire_gap_seconds: u64,
}
