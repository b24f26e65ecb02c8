//! The platform's services as child processes, the way `harness up` runs them: the release or
//! debug binaries built next to the running executable, configured through their environment
//! like in a deployment. Anything that needs a service's own process (its RSS, its file
//! descriptors, a SIGKILL) starts it from here; the soak test does.

use std::path::PathBuf;

use anyhow::Context;

use crate::process::{ProcessSpec, Signal, Supervised};
use crate::sqs::QueuePair;
use crate::{Service, Stack};

/// Where and how one service process runs.
#[derive(Debug, Clone)]
pub struct ServiceProcess {
    /// Which service (its name is also the binary's).
    pub service: Service,
    /// Name in logs and errors (`ledger`, `ledger-2`, ...).
    pub label: String,
    /// The public HTTP port.
    pub port: u16,
    /// The ledger's internal listener (digests and replays).
    pub internal_port: u16,
    /// The ledger's internal URL the consolidation's reconciler calls.
    pub ledger_internal_url: String,
    /// The service's database.
    pub database_url: String,
    /// Redis (the consolidation's cache).
    pub redis_url: String,
    /// The SQS endpoint.
    pub sqs_endpoint: String,
    /// The entries queue and its DLQ.
    pub queues: QueuePair,
    /// Settings added after (and overriding) the ones above, e.g. shortened retention windows.
    pub extra_env: Vec<(String, String)>,
    /// Where the output goes.
    pub log_file: PathBuf,
}

/// The binary of `service` next to the running executable (`target/<profile>/<service>`), when
/// it is built.
pub fn binary(service: Service) -> anyhow::Result<Option<PathBuf>> {
    let service = service.name();
    let exe = std::env::current_exe().context("locating the running executable")?;
    // A test or example binary lives one level deeper (`deps/`, `examples/`).
    let candidates = [
        exe.with_file_name(service),
        exe.parent()
            .and_then(|dir| dir.parent())
            .map_or_else(PathBuf::new, |dir| dir.join(service)),
    ];
    Ok(candidates.into_iter().find(|path| path.is_file()))
}

/// Whether the service on `port` answers `GET /health/ready` with 200 within 2 s (the services'
/// own probe, [`cashflow_platform::health::ask_ready`]).
pub async fn is_ready(port: u16) -> bool {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = std::time::Duration::from_secs(2);
    tokio::task::spawn_blocking(move || cashflow_platform::health::ask_ready(address, timeout))
        .await
        .is_ok_and(|answer| answer.is_ok())
}

/// Polls `/health/ready` on `port` until it answers 200, or fails after `timeout`.
pub async fn wait_ready(port: u16, timeout: std::time::Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while !is_ready(port).await {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the service on port {port} did not become ready within {timeout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

/// What every service process is told about the platform around it, the same for each of its
/// replicas: the identity provider, the consolidation's client credentials there (it calls the
/// ledger as itself), and the AWS region.
#[derive(Debug, Clone)]
pub struct PlatformEnv {
    issuer: String,
    audience: String,
    jwks_uri: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    aws_region: String,
}

impl PlatformEnv {
    /// The environment of `stack`'s identity provider, with a client registered for the
    /// consolidation.
    pub fn of(stack: &Stack) -> Self {
        let client = stack.identity().register_client(
            "consolidation",
            &["ledger:reconcile"],
            std::time::Duration::from_secs(300),
        );
        Self {
            issuer: stack.identity().issuer().to_string(),
            audience: stack.identity().audience().to_string(),
            jwks_uri: stack.identity().jwks_uri(),
            token_url: client.token_url,
            client_id: client.client_id,
            client_secret: client.client_secret,
            aws_region: stack.endpoints().aws_region.clone(),
        }
    }
}

impl ServiceProcess {
    /// The supervised process (not started), or `None` when the binary is not built.
    pub fn supervised(&self, stack: &Stack) -> anyhow::Result<Option<Supervised>> {
        self.process(&PlatformEnv::of(stack))
    }

    /// The supervised process in `platform` (not started), or `None` when the binary is not
    /// built.
    pub fn process(&self, platform: &PlatformEnv) -> anyhow::Result<Option<Supervised>> {
        let Some(program) = binary(self.service)? else {
            return Ok(None);
        };
        let mut env: Vec<(String, String)> = [
            (
                "INTERNAL_LISTEN_ADDR",
                format!("127.0.0.1:{}", self.internal_port),
            ),
            ("LEDGER_URL", self.ledger_internal_url.clone()),
            ("OAUTH_TOKEN_URL", platform.token_url.clone()),
            ("OAUTH_CLIENT_ID", platform.client_id.clone()),
            ("OAUTH_CLIENT_SECRET", platform.client_secret.clone()),
            ("LISTEN_ADDR", format!("127.0.0.1:{}", self.port)),
            ("DATABASE_URL", self.database_url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("ENTRIES_QUEUE_URL", self.queues.url.clone()),
            ("ENTRIES_DLQ_URL", self.queues.dlq_url.clone()),
            ("AWS_ENDPOINT_URL", self.sqs_endpoint.clone()),
            ("AWS_REGION", platform.aws_region.clone()),
            ("AUTH_ISSUER", platform.issuer.clone()),
            ("AUTH_AUDIENCE", platform.audience.clone()),
            ("AUTH_JWKS_URI", platform.jwks_uri.clone()),
            (
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec();
        for (key, value) in &self.extra_env {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        Ok(Some(Supervised::new(ProcessSpec {
            name: self.label.clone(),
            program,
            args: Vec::new(),
            env,
            cwd: None,
            user: None,
            ready_line: "listening".into(),
            stop_signal: Signal::TERM,
            log_file: self.log_file.clone(),
        })))
    }
}
