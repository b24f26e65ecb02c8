//! Reading typed configuration from environment variables, with errors that name the variable.

use std::fmt::Display;
use std::str::FromStr;

use anyhow::{Context, bail};

/// A required variable.
pub fn required(name: &str) -> anyhow::Result<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value),
        _ => bail!("{name} must be set"),
    }
}

/// An optional variable, parsed, or `default` when unset or empty.
pub fn or_default<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map_err(|e: T::Err| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{name}={value:?} is not valid")),
        _ => Ok(default),
    }
}

/// An optional variable, `None` when unset or empty.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
