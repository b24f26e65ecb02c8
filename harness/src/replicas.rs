//! Replicas of the services behind the nginx gateway, put together by hand: what the load
//! suite's `sla-under-fire` scenario still builds and kills replicas of. `harness up` and the
//! cluster tests use the supervised assembly, [`crate::cluster`]; the load scenarios move onto
//! it next, and this module goes. A replica is a [`ServiceProcess`] started and waited for until
//! its `/health/ready` answers; the gateway is [`crate::gateway`]'s nginx with one upstream per
//! service over its replicas' ports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::gateway::GatewayConfig;
use crate::process::Supervised;
use crate::services::ServiceProcess;
use crate::{Service, Stack};

/// One replica of a service: its process (startable again after a kill: same port, same
/// settings) and where it listens.
#[derive(Debug)]
pub struct Replica {
    /// Its service.
    pub service: Service,
    /// Its own HTTP port (the gateway's upstream).
    pub port: u16,
    /// The process.
    pub process: Supervised,
}

impl Replica {
    /// The replica described by `spec`, not started; `None` when the service's binary is not
    /// built next to the running executable.
    pub fn new(spec: &ServiceProcess, stack: &Stack) -> anyhow::Result<Option<Self>> {
        Ok(spec.supervised(stack)?.map(|process| Self {
            service: spec.service,
            port: spec.port,
            process,
        }))
    }

    /// Its own URL (not through the gateway).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `host:port`, as the gateway's upstream names it.
    pub fn upstream(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, after a kill or a stop) and waits until it is ready to serve.
    pub async fn start(&self, timeout: Duration) -> anyhow::Result<()> {
        self.process.start(timeout).await?;
        crate::services::wait_ready(self.port, timeout).await
    }
}

/// The gateway's upstreams: each service's replicas.
pub fn upstreams<'a>(
    replicas: impl IntoIterator<Item = &'a Replica>,
) -> BTreeMap<Service, Vec<String>> {
    let mut upstreams: BTreeMap<Service, Vec<String>> = BTreeMap::new();
    for replica in replicas {
        upstreams
            .entry(replica.service)
            .or_default()
            .push(replica.upstream());
    }
    upstreams
}

/// Writes the configuration and starts nginx in front of `config.upstreams`; `None` when nginx is
/// not installed (`ci/install-deps.sh` installs it).
pub async fn start_gateway(
    config: &GatewayConfig,
    log_file: PathBuf,
    timeout: Duration,
) -> anyhow::Result<Option<Supervised>> {
    let Some(nginx) = crate::gateway::nginx_binary() else {
        return Ok(None);
    };
    let gateway = crate::gateway::process(config, &nginx, log_file)?;
    gateway.start(timeout).await?;
    Ok(Some(gateway))
}
