//! The scenario's rates (its `--seconds` is the command's: `load cost` or `load all`).

/// The fixed rates of the cost scenario's phases.
#[derive(Debug, Clone, clap::Args)]
pub struct CostArgs {
    /// Fixed rate of the cost scenario's cached reads and of its trivial handler's requests.
    #[arg(long, default_value_t = 1000)]
    pub cost_read_rate: usize,
    /// Fixed rate of the cost scenario's uncached reads.
    #[arg(long, default_value_t = 300)]
    pub cost_uncached_rate: usize,
    /// Fixed rate of the cost scenario's writes.
    #[arg(long, default_value_t = 300)]
    pub cost_write_rate: usize,
    /// POSTs per second behind the cost scenario's reads-with-writes phase (the capacity
    /// search's --write-rate).
    #[arg(long, default_value_t = 200)]
    pub cost_writes_behind: usize,
}
