//! The ledger service binary: configuration from the environment, then [`ledger::Application`].
//! `ledger healthcheck` is the container health check.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return cashflow_platform::health::probe(8081);
    }
    cashflow_platform::telemetry::init_logging("ledger");
    let config = ledger::Config::from_env().context("reading the configuration")?;
    let app = ledger::Application::build(config).await?;
    tracing::info!(address = %app.local_addr(), "ledger listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(cashflow_platform::shutdown::cancel_on_signal(
        shutdown.clone(),
    ));
    app.run_until_stopped(shutdown).await
}
