//! The trivial axum handler: the most requests per second goose's setup gets from any HTTP
//! service on this machine now.

use std::sync::Arc;

use goose::prelude::*;

use crate::kit::goose::{Attack, Step, transaction};
use crate::kit::report::Figure;

fn hello(user: &mut GooseUser, _: Arc<()>) -> Step<'_> {
    Box::pin(async move {
        let _ = user.get("/").await?;
        Ok(())
    })
}

/// A trivial axum handler's rate under goose's 64 users (the read scenarios' setup), unthrottled
/// for `seconds`.
pub async fn rate(seconds: usize) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let router = ::axum::Router::new().route("/", ::axum::routing::get(|| async { "ok" }));
    let server = tokio::spawn(async move { ::axum::serve(listener, router).await });
    let scenario = scenario!("trivial").register_transaction(transaction(&Arc::new(()), hello));
    let run = Attack {
        host: &address,
        users: 64,
        rate: 0,
        seconds,
        report: "ceiling-axum",
    }
    .run(scenario)
    .await;
    server.abort();
    Ok(run?.rate)
}

/// [`rate`], also pushed to `figures`.
pub async fn measure(seconds: usize, figures: &mut Vec<Figure>) -> anyhow::Result<f64> {
    let rate = rate(seconds).await?;
    figures.push(Figure::new(
        "ceilings",
        "trivial axum handler, goose 64 users",
        rate,
        "req/s",
    ));
    Ok(rate)
}
