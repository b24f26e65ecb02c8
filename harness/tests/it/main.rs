//! The harness's self-tests, against the real processes it runs.

mod dependencies;
mod faults;
mod identity;
mod isolation;
mod orphans;
mod up;

use std::future::Future;
use std::time::{Duration, Instant};

/// Migrations used to exercise template databases.
pub static NOTES: sqlx::migrate::Migrator = sqlx::migrate!("tests/it/migrations");

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
