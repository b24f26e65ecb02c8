//! The services as a small cluster: N replicas of each behind the nginx gateway, supervised the
//! way Kubernetes runs a Deployment, so that `harness up` (and the tests) live through what a
//! deployed system lives through every day (ADR 0019).
//!
//! - A replica that exits is started again with a growing back-off ([`RestartPolicy`]), and the
//!   gateway sends it requests only once `/health/ready` answers again (`replica.rs`).
//! - [`Cluster::rollout_restart`] replaces a service's replicas one at a time, as `kubectl
//!   rollout restart` with maxSurge 1 and maxUnavailable 0: a new replica starts; once it is
//!   ready it joins the gateway; then an old one leaves the gateway (the reload returns once no
//!   request can reach it any more), and only then gets SIGTERM and drains.
//! - [`Cluster::scale`] adds or removes replicas the same way (1 to [`MAX_REPLICAS`]).
//! - Every event is one line ([`Event`]) on [`Cluster::subscribe`]; `harness up` prints them.
//!
//! The gateway's upstreams are always the replicas that are ready and not leaving: one task
//! reloads nginx whenever that set may have changed, and stops and scale-downs reload it
//! themselves before they signal anything.

pub mod control;
mod event;
mod replica;
mod restart;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Notify, broadcast};

pub use self::event::{Event, EventKind};
pub use self::replica::{LastExit, Phase, ReplicaStatus};
use self::replica::{Replica, Surroundings};
pub use self::restart::RestartPolicy;
use crate::gateway::{Gateway, GatewayConfig, InternalListener, Reload};
use crate::services::{PlatformEnv, ServiceProcess};
use crate::sqs::QueuePair;
use crate::{Scope, Service, Stack};

/// Most replicas of one service (`harness scale`).
pub const MAX_REPLICAS: u16 = 8;
/// How long a replica may take from SIGTERM to its exit before it is killed: the services'
/// drain deadline (`SHUTDOWN_DRAIN_TIMEOUT_MS`, 20 s by default) and room to exit. The
/// Kubernetes manifests' `terminationGracePeriodSeconds` is this plus the preStop sleep
/// (ci/check-deploy-consistency.py checks it).
pub const TERMINATION_GRACE: Duration = Duration::from_secs(30);
/// The longest the gateway may take to stop sending a replica new requests once it is taken out
/// (until nginx's new worker runs): what the manifests' preStop sleep must cover, since in
/// Kubernetes SIGTERM and the endpoint's removal race. Locally SIGTERM waits further, until the
/// old worker has finished the requests it held. The tests check the reloads stay within it.
pub const GATEWAY_LEAVE_DEADLINE: Duration = Duration::from_secs(5);
/// How long a replica may take to answer `/health/ready` after it starts (the manifests'
/// startupProbe allows at least this).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a rollout waits for each new replica by default (Kubernetes' progress deadline).
pub const PROGRESS_DEADLINE: Duration = Duration::from_secs(90);

/// How one service's replicas run: everything but their own ports.
#[derive(Debug, Clone)]
pub struct ServiceTemplate {
    /// The service's database.
    pub database_url: String,
    /// Redis (the consolidation's cache).
    pub redis_url: String,
    /// The SQS endpoint.
    pub sqs_endpoint: String,
    /// The entries queue and its DLQ.
    pub queues: QueuePair,
    /// More settings, over the ones above (a Redis key prefix, shortened retention windows, a
    /// setting a rollout changes).
    pub env: Vec<(String, String)>,
}

impl ServiceTemplate {
    /// A service on `own` (its database, Redis) that shares the queue pair of `queues` (the
    /// ledger's scope: both services use one queue pair), with `env` over the rest.
    pub fn on_scopes(own: &Scope, queues: &Scope, env: Vec<(String, String)>) -> Self {
        Self {
            database_url: own.database_url.clone(),
            redis_url: own.redis_url.clone(),
            sqs_endpoint: queues.sqs_endpoint.clone(),
            queues: queues.queues.clone(),
            env,
        }
    }
}

/// Where the gateway listens and how it throttles.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The port of the ledger's internal listener over all ledger replicas (what the
    /// consolidation's reconciler calls).
    pub ledger_internal_port: u16,
    /// Steady requests per second.
    pub rate_limit: u32,
    /// Requests above the rate allowed at once.
    pub burst_limit: u32,
    /// nginx's folder (configuration, pid, temp files, access log).
    pub dir: PathBuf,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Each service's template (both services).
    pub services: BTreeMap<Service, ServiceTemplate>,
    /// Replicas of each service at start.
    pub replicas: u16,
    /// The first replica of a service listens here (reachable directly for debugging); every
    /// other replica takes a free port.
    pub first_ports: BTreeMap<Service, u16>,
    /// The gateway.
    pub gateway: GatewaySpec,
    /// The back-off between restarts.
    pub restart: RestartPolicy,
    /// Where the replicas' and the gateway's logs go: `<dir>/<replica>-<tag>.log`.
    pub logs: (PathBuf, String),
}

/// The running cluster.
#[derive(Debug)]
pub struct Cluster {
    inner: Arc<Inner>,
    syncer: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Inner {
    platform: PlatformEnv,
    first_ports: BTreeMap<Service, u16>,
    logs: (PathBuf, String),
    ledger_internal_url: String,
    gateway: Gateway,
    gateway_url: String,
    state: Mutex<State>,
    /// One gateway update at a time, each computed from the state when it starts.
    gateway_lock: tokio::sync::Mutex<()>,
    surroundings: Surroundings,
    /// One rollout or scale at a time.
    operations: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    templates: BTreeMap<Service, ServiceTemplate>,
    replicas: Vec<Arc<Replica>>,
    tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
    last_ordinal: BTreeMap<Service, u16>,
    /// Set by [`Cluster::shutdown`]: no replica starts any more.
    stopping: bool,
}

impl Cluster {
    /// Starts `spec.replicas` replicas of each service, waits until each is ready, then the
    /// gateway in front of them. Fails when nginx is not installed or a service's binary is not
    /// built.
    pub async fn start(stack: &Stack, spec: ClusterSpec) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=MAX_REPLICAS).contains(&spec.replicas),
            "replicas must be 1 to {MAX_REPLICAS}"
        );
        for service in Service::ALL {
            crate::services::binary(service)?.with_context(|| {
                format!(
                    "the {service} binary is not built next to this one: cargo build --workspace \
                     --bins"
                )
            })?;
        }
        let (dir, tag) = &spec.logs;
        let gateway_config = GatewayConfig {
            listen: format!("127.0.0.1:{}", spec.gateway.port),
            upstreams: Service::ALL.map(|s| (s, Vec::new())).into(),
            rate_limit: spec.gateway.rate_limit,
            burst_limit: spec.gateway.burst_limit,
            access_log: spec.gateway.dir.join("access.log"),
            dir: spec.gateway.dir.clone(),
            ledger_internal: Some(InternalListener {
                listen: format!("127.0.0.1:{}", spec.gateway.ledger_internal_port),
                upstreams: Vec::new(),
            }),
        };
        // The gateway starts first, with no replica (its routes answer 503), so that the ledger's
        // internal listener is there for the consolidation's reconciler from its first start.
        let gateway = Gateway::start(
            gateway_config,
            dir.join(format!("gateway-{tag}.log")),
            START_TIMEOUT,
        )
        .await?
        .context("nginx is not installed (apt-get install -y nginx, or bash ci/install-deps.sh)")?;
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            platform: PlatformEnv::of(stack),
            first_ports: spec.first_ports,
            logs: spec.logs.clone(),
            ledger_internal_url: format!("http://127.0.0.1:{}", spec.gateway.ledger_internal_port),
            gateway,
            gateway_url: format!("http://127.0.0.1:{}", spec.gateway.port),
            state: Mutex::new(State {
                templates: spec.services,
                ..State::default()
            }),
            gateway_lock: tokio::sync::Mutex::new(()),
            surroundings: Surroundings {
                events,
                gateway_changed: Arc::new(Notify::new()),
                policy: spec.restart,
                start_timeout: START_TIMEOUT,
            },
            operations: tokio::sync::Mutex::new(()),
        });
        let syncer = tokio::spawn(Arc::clone(&inner).keep_gateway_in_sync());
        let cluster = Self { inner, syncer };
        // The ledger first: the consolidation's reconciler calls it from its first start.
        let started = async {
            for service in Service::ALL {
                let mut started = Vec::new();
                for _ in 0..spec.replicas {
                    started.push(cluster.inner.add_replica(service)?);
                }
                let deadline = Instant::now() + START_TIMEOUT;
                for replica in &started {
                    cluster.inner.wait_serving(replica, deadline).await?;
                }
            }
            anyhow::Ok(())
        };
        if let Err(e) = started.await {
            cluster.shutdown().await;
            return Err(e);
        }
        Ok(cluster)
    }

    /// The gateway's URL: the one entry point.
    pub fn gateway_url(&self) -> &str {
        &self.inner.gateway_url
    }

    /// The gateway's JSON access log (one line per request, with the replicas it tried and
    /// their statuses).
    pub async fn access_log(&self) -> PathBuf {
        self.inner.gateway.config().await.access_log
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.surroundings.events.subscribe()
    }

    /// Each replica, by service then ordinal.
    pub fn ps(&self) -> Vec<ReplicaStatus> {
        let mut replicas: Vec<Arc<Replica>> = self.inner.state().replicas.clone();
        replicas.sort_by_key(|r| (r.service, r.ordinal));
        replicas.iter().map(|r| r.report()).collect()
    }

    /// Replaces `service`'s replicas one at a time (maxSurge 1, maxUnavailable 0), the new ones
    /// with `env` set over the template's settings (`KEY=` unsets nothing: it sets empty). When a
    /// new replica is not ready within `deadline`, the rollout stops: that replica goes, the
    /// template is restored, and the replicas not yet replaced keep serving.
    pub async fn rollout_restart(
        &self,
        service: Service,
        env: Vec<(String, String)>,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let inner = &self.inner;
        let _one_at_a_time = inner.operations.lock().await;
        let previous = inner.state().templates.get(&service).cloned();
        let previous = previous.with_context(|| format!("no template for {service}"))?;
        if !env.is_empty() {
            let mut template = previous.clone();
            for (key, value) in env {
                template.env.retain(|(k, _)| *k != key);
                template.env.push((key, value));
            }
            inner.state().templates.insert(service, template);
        }
        let old: Vec<Arc<Replica>> = inner.replicas_of(service);
        let count = old.len();
        inner.note(service, format!("rollout restart of {count} replica(s)"));
        for (i, old) in old.iter().enumerate() {
            let new = inner.add_replica(service)?;
            if let Err(e) = inner.wait_serving(&new, Instant::now() + deadline).await {
                inner.retire(std::slice::from_ref(&new)).await?;
                inner.state().templates.insert(service, previous);
                let serving: Vec<String> = inner
                    .replicas_of(service)
                    .iter()
                    .map(|r| r.name.clone())
                    .collect();
                let message = format!(
                    "rollout restart stopped after {i} of {count} replica(s): {e:#}; the \
                     template is restored and {} keep serving",
                    serving.join(", ")
                );
                inner.note(service, message.clone());
                anyhow::bail!(message);
            }
            inner.retire(std::slice::from_ref(old)).await?;
        }
        inner.note(service, "rollout restart done".into());
        Ok(())
    }

    /// Runs `replicas` replicas of `service` (1 to [`MAX_REPLICAS`]): new ones join the gateway
    /// once ready; removed ones (those not ready first, then the newest) leave it before they get
    /// SIGTERM.
    pub async fn scale(&self, service: Service, replicas: u16) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=MAX_REPLICAS).contains(&replicas),
            "a service runs 1 to {MAX_REPLICAS} replicas, not {replicas}"
        );
        let inner = &self.inner;
        let _one_at_a_time = inner.operations.lock().await;
        let mut live = inner.replicas_of(service);
        let wanted = usize::from(replicas);
        inner.note(service, format!("scale {} -> {replicas}", live.len()));
        if wanted > live.len() {
            let mut added = Vec::new();
            for _ in live.len()..wanted {
                added.push(inner.add_replica(service)?);
            }
            let deadline = Instant::now() + START_TIMEOUT;
            for replica in &added {
                inner.wait_serving(replica, deadline).await?;
            }
        } else if wanted < live.len() {
            // Those not serving go first, then the newest (as a ReplicaSet scales down).
            live.sort_by_key(|r| (r.serves(), std::cmp::Reverse(r.ordinal)));
            let surplus = live.len() - wanted;
            let victims: Vec<Arc<Replica>> = live.into_iter().take(surplus).collect();
            inner.retire(&victims).await?;
        }
        inner.note(service, format!("scaled to {replicas}"));
        Ok(())
    }

    /// Stops everything: the gateway first (nothing new reaches a draining replica), then every
    /// replica with SIGTERM, each within [`TERMINATION_GRACE`]. A rollout or scale under way
    /// fails: it can start no replica any more.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.state().stopping = true;
        self.syncer.abort();
        let _ = inner.gateway.stop(TERMINATION_GRACE).await;
        let (replicas, tasks) = {
            let mut state = inner.state();
            (
                std::mem::take(&mut state.replicas),
                std::mem::take(&mut state.tasks),
            )
        };
        for replica in &replicas {
            replica.set_leaving();
            replica.stop.cancel();
        }
        futures::future::join_all(
            replicas
                .iter()
                .map(|replica| replica.process.stop(TERMINATION_GRACE)),
        )
        .await;
        for (_, task) in tasks {
            let _ = task.await;
        }
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The replicas of `service` not being stopped, oldest first.
    fn replicas_of(&self, service: Service) -> Vec<Arc<Replica>> {
        let mut replicas: Vec<Arc<Replica>> = self
            .state()
            .replicas
            .iter()
            .filter(|r| r.service == service && r.live())
            .cloned()
            .collect();
        replicas.sort_by_key(|r| r.ordinal);
        replicas
    }

    fn note(&self, service: Service, text: String) {
        let _ = self.surroundings.events.send(Event {
            subject: service.to_string(),
            kind: EventKind::Note(text),
        });
    }

    /// A new replica of `service` from its template, started by its own lifecycle task.
    fn add_replica(&self, service: Service) -> anyhow::Result<Arc<Replica>> {
        let mut state = self.state();
        anyhow::ensure!(!state.stopping, "the cluster is stopping");
        let template = state
            .templates
            .get(&service)
            .cloned()
            .with_context(|| format!("no template for {service}"))?;
        let ordinal = state.last_ordinal.get(&service).copied().unwrap_or(0) + 1;
        let port = match self.first_ports.get(&service) {
            Some(port) if ordinal == 1 => *port,
            _ => crate::backend::native::free_port()?,
        };
        let internal_port = crate::backend::native::free_port()?;
        let name = format!("{service}-{ordinal}");
        let (dir, tag) = &self.logs;
        let process = ServiceProcess {
            service,
            label: name.clone(),
            port,
            internal_port,
            ledger_internal_url: self.ledger_internal_url.clone(),
            database_url: template.database_url,
            redis_url: template.redis_url,
            sqs_endpoint: template.sqs_endpoint,
            queues: template.queues,
            extra_env: template.env,
            log_file: dir.join(format!("{name}-{tag}.log")),
        }
        .process(&self.platform)?
        .with_context(|| format!("the {service} binary is not built"))?;
        let replica = Arc::new(Replica::new(service, ordinal, port, internal_port, process));
        state.last_ordinal.insert(service, ordinal);
        state.replicas.push(Arc::clone(&replica));
        let task = tokio::spawn(Arc::clone(&replica).run(self.surroundings.clone()));
        state.tasks.push((name, task));
        let _ = self.surroundings.events.send(Event {
            subject: replica.name.clone(),
            kind: EventKind::Starting { port },
        });
        Ok(replica)
    }

    /// Waits until `replica` is ready and in the gateway's configuration in force, or fails
    /// at `deadline` saying how it last exited.
    async fn wait_serving(&self, replica: &Replica, deadline: Instant) -> anyhow::Result<()> {
        loop {
            if replica.serves() && replica.in_gateway() {
                return Ok(());
            }
            anyhow::ensure!(!self.state().stopping, "the cluster is stopping");
            if Instant::now() >= deadline {
                let (restarts, last_exit) = replica.exits();
                anyhow::bail!(
                    "{} was not ready in time ({}, {restarts} restart(s){})",
                    replica.name,
                    replica.phase(),
                    last_exit
                        .map(|e| format!(", last exit: {e}"))
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops `replicas`: out of the gateway first (one reload, which returns once no request
    /// can reach them), then SIGTERM, and each drains within [`TERMINATION_GRACE`].
    async fn retire(&self, replicas: &[Arc<Replica>]) -> anyhow::Result<()> {
        for replica in replicas {
            replica.set_leaving();
        }
        let reload = self.sync_gateway().await?;
        let running: Vec<bool> = replicas.iter().map(|r| r.process.is_running()).collect();
        for (replica, running) in replicas.iter().zip(&running) {
            replica.stop.cancel();
            if *running {
                let _ = self.surroundings.events.send(Event {
                    subject: replica.name.clone(),
                    kind: EventKind::Leaving {
                        no_new_requests: reload.in_force.unwrap_or_default(),
                        none_in_flight: reload.old_workers_done.unwrap_or_default(),
                    },
                });
            }
        }
        let stopped = futures::future::join_all(replicas.iter().map(|replica| async move {
            let sigterm = Instant::now();
            let result = replica.process.stop(TERMINATION_GRACE).await;
            (result, sigterm.elapsed())
        }))
        .await;
        let names: Vec<&str> = replicas.iter().map(|r| r.name.as_str()).collect();
        let tasks: Vec<tokio::task::JoinHandle<()>> = {
            let mut state = self.state();
            state.replicas.retain(|r| !names.contains(&r.name.as_str()));
            let (theirs, others) = std::mem::take(&mut state.tasks)
                .into_iter()
                .partition(|(name, _)| names.contains(&name.as_str()));
            state.tasks = others;
            theirs.into_iter().map(|(_, task)| task).collect()
        };
        for task in tasks {
            let _ = task.await;
        }
        for ((replica, (result, drained_in)), running) in replicas.iter().zip(stopped).zip(running)
        {
            result.with_context(|| format!("stopping {}", replica.name))?;
            let kind = if running {
                let status = replica
                    .process
                    .exited()
                    .map_or_else(|| "gone".to_string(), replica::describe);
                EventKind::Stopped { status, drained_in }
            } else {
                EventKind::Removed
            };
            let _ = self.surroundings.events.send(Event {
                subject: replica.name.clone(),
                kind,
            });
        }
        Ok(())
    }

    /// Makes the gateway serve exactly the replicas that are ready and not leaving, marks which
    /// are in it, and says "ready" for each that just joined. Returns how long the reload took.
    async fn sync_gateway(&self) -> anyhow::Result<Reload> {
        let _one_at_a_time = self.gateway_lock.lock().await;
        let replicas = self.state().replicas.clone();
        let serving: Vec<&Arc<Replica>> = replicas.iter().filter(|r| r.serves()).collect();
        let mut upstreams: BTreeMap<Service, Vec<String>> =
            Service::ALL.map(|s| (s, Vec::new())).into();
        for replica in &serving {
            upstreams
                .entry(replica.service)
                .or_default()
                .push(replica.upstream());
        }
        let ledger_internal = serving
            .iter()
            .filter(|r| r.service == Service::Ledger)
            .map(|r| r.internal_upstream())
            .collect();
        let reload = self.gateway.update(upstreams, ledger_internal).await?;
        for replica in &replicas {
            let joined = replica.set_in_gateway(serving.iter().any(|s| Arc::ptr_eq(s, replica)));
            if joined {
                let _ = self.surroundings.events.send(Event {
                    subject: replica.name.clone(),
                    kind: EventKind::Ready,
                });
            }
        }
        Ok(reload)
    }

    /// Reloads the gateway whenever a replica became ready or exited.
    async fn keep_gateway_in_sync(self: Arc<Self>) {
        loop {
            self.surroundings.gateway_changed.notified().await;
            if let Err(e) = self.sync_gateway().await {
                let _ = self.surroundings.events.send(Event {
                    subject: "gateway".into(),
                    kind: EventKind::Note(format!("update failed: {e:#}")),
                });
            }
        }
    }
}

impl Drop for Cluster {
    /// A cluster dropped without [`Cluster::shutdown`] (a panicking test): the lifecycles stop,
    /// and each process is stopped as its [`crate::process::Supervised`] drops.
    fn drop(&mut self) {
        self.syncer.abort();
        for replica in &self.inner.state().replicas {
            replica.stop.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// SIGTERM gives a replica the services' whole drain, and room to exit, before SIGKILL
    /// (ci/check-deploy-consistency.py holds the manifests' grace period to the same).
    #[test]
    fn a_replica_drains_in_full_before_it_is_killed() {
        let drain = cashflow_platform::deadline::Deadlines::default().shutdown_drain;
        assert!(super::TERMINATION_GRACE >= drain + Duration::from_secs(5));
    }
}
