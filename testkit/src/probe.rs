//! What every service serves besides its API — `/metrics` and `/openapi.json` — read the way
//! the tests read them.

use anyhow::Context;
use serde_json::Value;

/// The Prometheus text the service at `base` serves on `/metrics`.
pub async fn metrics(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let response = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .context("GET /metrics")?;
    Ok(response.text().await?)
}

/// The OpenAPI document the service at `base` serves on `/openapi.json`.
pub async fn openapi(http: &reqwest::Client, base: &str) -> anyhow::Result<Value> {
    let response = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .context("GET /openapi.json")?;
    Ok(response.json().await?)
}
