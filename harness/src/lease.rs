//! The lease of a set of shared dependencies: the endpoints of dependencies that one process
//! runs for many (`harness shared-deps` for a whole `cargo nextest run`), written as a file whose
//! path the users find in [`LEASE_VAR`]. [`crate::shared`] reads it; the command line writes it.

use std::path::Path;

use anyhow::Context;

use crate::backend::Endpoints;

/// The variable that names the lease file for the tests.
pub const LEASE_VAR: &str = "HARNESS_SHARED_LEASE";

/// The endpoints in the lease named by [`LEASE_VAR`], if the variable is set.
pub fn from_env() -> anyhow::Result<Option<Endpoints>> {
    std::env::var_os(LEASE_VAR)
        .map(|file| read(Path::new(&file)))
        .transpose()
}

/// The endpoints of the running shared dependencies, from their lease file.
pub fn read(file: &Path) -> anyhow::Result<Endpoints> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the shared dependencies' lease {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
}

/// Writes the lease whole, then renames it into place: a reader never sees half a lease.
pub fn write(file: &Path, endpoints: &Endpoints) -> anyhow::Result<()> {
    let partial = file.with_extension("partial");
    std::fs::write(&partial, serde_json::to_string_pretty(endpoints)?)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, file).with_context(|| format!("writing {}", file.display()))
}
