//! `harness token`: mints a token with the keys of the running `harness up`.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::running::UpState;

/// Scopes a token gets when none is asked for.
const DEFAULT_SCOPES: [&str; 3] = ["entries:write", "entries:read", "balances:read"];

#[derive(Debug, Args)]
pub(super) struct TokenArgs {
    /// Merchant the token may act for (repeat for several).
    #[arg(long = "merchant", required = true)]
    merchants: Vec<String>,
    /// Scope to grant (repeat for several); default: entries:write entries:read balances:read.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Mint with the keys of a `harness identity` (e.g. target/compose/identity/keys.json)
    /// instead of the running `harness up`'s.
    #[arg(long)]
    keys_file: Option<std::path::PathBuf>,
}

pub(super) fn run(args: TokenArgs) -> anyhow::Result<()> {
    let keys = match &args.keys_file {
        Some(file) => super::identity::load(file)
            .with_context(|| format!("no identity keys in {} (is compose up?)", file.display()))?,
        None => UpState::read()?.identity,
    };
    let scopes = if args.scopes.is_empty() {
        DEFAULT_SCOPES.iter().map(ToString::to_string).collect()
    } else {
        args.scopes
    };
    let token = keys
        .token()
        .merchants(args.merchants)
        .scopes(scopes)
        .ttl(Duration::from_secs(args.ttl))
        .mint()?;
    println!("{token}");
    Ok(())
}
