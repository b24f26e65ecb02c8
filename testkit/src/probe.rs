//! What every service serves besides its API — `/metrics` and `/openapi.json` — read the way
//! the tests read them; [`Served`] gives a test's handle on a running service both.

use std::future::Future;

use anyhow::Context;
use serde_json::Value;

/// A test's handle on a service it runs: where it listens and the client to call it with.
pub trait Served: Sync {
    /// The client the test calls the service with.
    fn http(&self) -> &reqwest::Client;

    /// The service's base URL.
    fn base_url(&self) -> &str;

    /// Its `/metrics` text; panics when it cannot be read.
    fn scrape(&self) -> impl Future<Output = String> + Send {
        async {
            metrics(self.http(), self.base_url())
                .await
                .expect("metrics")
        }
    }

    /// Its OpenAPI document; panics when it cannot be read.
    fn openapi(&self) -> impl Future<Output = Value> + Send {
        async {
            openapi(self.http(), self.base_url())
                .await
                .expect("openapi")
        }
    }
}

/// The Prometheus text the service at `base` serves on `/metrics`.
pub async fn metrics(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    Ok(get(http, base, "/metrics").await?.text().await?)
}

/// The OpenAPI document the service at `base` serves on `/openapi.json`.
pub async fn openapi(http: &reqwest::Client, base: &str) -> anyhow::Result<Value> {
    Ok(get(http, base, "/openapi.json").await?.json().await?)
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> anyhow::Result<reqwest::Response> {
    http.get(format!("{base}{path}"))
        .send()
        .await
        .with_context(|| format!("GET {path}"))
}
