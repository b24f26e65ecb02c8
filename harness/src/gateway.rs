//! The local API gateway: Debian's nginx in front of N replicas of each service, standing where
//! API Gateway and the internal ALB stand in AWS (ADR 0011).
//!
//! The nginx configuration is generated from `terraform/modules/api/routes.json`, the file the
//! terraform `api` module reads its routes from, so the local routing and the deployed routing
//! cannot drift. What it does, and why:
//! - routes by path to an upstream per service (round robin over its replicas); paths that are
//!   not routed are 404 problem+json, as API Gateway answers an unknown route;
//! - passive health checks: a replica that fails a connection or times out is left out for
//!   `fail_timeout`, and the request goes to another replica (`proxy_next_upstream`). A
//!   service's own 503 (its database is down, say) goes to the client as it is, with the
//!   service's `Retry-After`, and is not resent: every replica shares that dependency, so
//!   another one would only make the client wait a second dependency deadline, add load to the
//!   dependency that is struggling, and leave out a replica that is itself healthy. nginx
//!   never passes a POST to a second replica once it was sent to one; a POST to a route that
//!   honours `Idempotency-Key` and carries one is retried anyway, since the ledger replays the
//!   first answer for the same key and body (a retry cannot record twice);
//! - throttling like the stage's token bucket: `limit_req` with the rate and burst of the
//!   terraform stage defaults, answered 429 problem+json with `Retry-After`;
//! - `X-Request-Id` passed through, or nginx's own request id when the client sent none, so
//!   the gateway's access log and the services' logs name the same id;
//! - every upstream call has deadlines (connect, send, read, and for all retries together).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::Service;
use crate::process::{ProcessSpec, Signal, Supervised};

/// The one description of the routes, shared with terraform (`terraform/modules/api`).
pub const ROUTES_JSON: &str = include_str!("../../terraform/modules/api/routes.json");

/// Throttling defaults: the terraform stage's `throttling_rate_limit` and
/// `throttling_burst_limit` defaults (ci/check-deploy-consistency.py checks they agree).
pub const DEFAULT_RATE_LIMIT: u32 = 500;
/// See [`DEFAULT_RATE_LIMIT`].
pub const DEFAULT_BURST_LIMIT: u32 = 1000;

/// How long an old worker may take to finish its requests after a reload (nginx then closes
/// what is left): above [`READ_TIMEOUT`], so a request in flight is never cut by a reload.
const WORKER_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an idle connection to a replica is kept: below the services' own idle limit (hyper
/// closes a connection that sends no request for 30 s), so the gateway never sends a request on
/// a connection the replica is closing.
const UPSTREAM_KEEPALIVE: Duration = Duration::from_secs(20);
/// How long a replica that failed is left out (passive health check), and how many failures
/// within that time mark it down. One failure: a refused connection means the process is gone.
const FAIL_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_FAILS: u32 = 1;
/// Deadlines of the calls to a replica. The read deadline exceeds the services' own whole-request
/// deadline (`HTTP_REQUEST_TIMEOUT_MS`, 10 s), so a slow request is answered by the service's
/// 503 rather than cut by the gateway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Bodies the gateway accepts: above the ledger's `MAX_BODY_BYTES` default, and small enough to
/// stay in memory (nothing is buffered to disk).
const MAX_BODY: &str = "1m";

/// One route of `routes.json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST`, ... or `ANY`.
    pub method: String,
    /// API Gateway path syntax: `{name}` is one segment, `{name+}` the rest of the path.
    pub path: String,
    /// The service that answers it.
    pub service: Service,
    /// Routed by the deployed API Gateway too (`false`: local gateway only, e.g. admin).
    pub public: bool,
    /// The route honours `Idempotency-Key`, so a POST carrying one may be retried on another
    /// replica after it was sent.
    #[serde(default)]
    pub idempotency_key: bool,
}

#[derive(Debug, Deserialize)]
struct RouteFile {
    routes: Vec<Route>,
}

/// The routes of `routes.json`, checked: known services, paths under `/v1/`, none under
/// `/internal` (the ledger's second listener is never routed).
pub fn routes() -> anyhow::Result<Vec<Route>> {
    let file: RouteFile = serde_json::from_str(ROUTES_JSON).context("parsing routes.json")?;
    for route in &file.routes {
        anyhow::ensure!(
            route.path.starts_with("/v1/"),
            "route {} {}: every routed path is under /v1/",
            route.method,
            route.path
        );
        anyhow::ensure!(
            !route.path.contains("/internal"),
            "route {}: the ledger's /internal routes are never routed",
            route.path
        );
        anyhow::ensure!(
            !route.idempotency_key || route.method == "POST",
            "route {} {}: only a POST route can honour Idempotency-Key",
            route.method,
            route.path
        );
    }
    Ok(file.routes)
}

/// What the generated configuration serves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where the gateway listens (`127.0.0.1:8080`, or a port alone).
    pub listen: String,
    /// Replicas per service, as `host:port`.
    pub upstreams: BTreeMap<Service, Vec<String>>,
    /// Steady requests per second (whole gateway, like the stage-wide limit).
    pub rate_limit: u32,
    /// Requests above the rate allowed at once.
    pub burst_limit: u32,
    /// The folder of nginx's pid file and temp folders.
    pub dir: PathBuf,
    /// Where the access log goes (JSON lines; `/dev/stdout` in a container).
    pub access_log: PathBuf,
    /// The ledger's internal listener behind one address (digests and replays for the
    /// consolidation's reconciler), as the `ledger` Service's internal port is in Kubernetes;
    /// `None` where the consolidation calls one ledger directly (compose).
    pub ledger_internal: Option<InternalListener>,
}

/// A second listener that spreads a service's internal port over its replicas: never routed
/// from the outside, only for the services themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalListener {
    /// Where it listens (`127.0.0.1:9081`).
    pub listen: String,
    /// The replicas' internal listeners, as `host:port`.
    pub upstreams: Vec<String>,
}

impl GatewayConfig {
    /// Checks what nginx would otherwise reject at start, or misroute. A service with no replica
    /// ready is fine: its routes answer 503 until one is.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.rate_limit > 0, "the gateway's rate limit must be > 0");
        for route in routes()? {
            anyhow::ensure!(
                self.upstreams.contains_key(&route.service),
                "route {} {} goes to {}, which is not in the gateway",
                route.method,
                route.path,
                route.service
            );
        }
        Ok(())
    }
}

/// The `server` lines of an upstream; with no replica, one that is marked down, so that nginx
/// answers 502 (our 503 problem+json) until a replica joins.
fn upstream_servers(replicas: &[String]) -> String {
    if replicas.is_empty() {
        return "        server 127.0.0.1:1 down;\n".to_string();
    }
    replicas
        .iter()
        .map(|replica| {
            format!(
                "        server {replica} max_fails={MAX_FAILS} fail_timeout={}s;\n",
                FAIL_TIMEOUT.as_secs()
            )
        })
        .collect()
}

/// An nginx location regex for an API Gateway path template.
fn location_regex(path: &str) -> String {
    let mut regex = String::from("^");
    for (i, segment) in path.trim_start_matches('/').split('/').enumerate() {
        if i > 0 || path.starts_with('/') {
            regex.push('/');
        }
        if segment.starts_with('{') && segment.ends_with("+}") {
            regex.push_str(".+");
        } else if segment.starts_with('{') && segment.ends_with('}') {
            regex.push_str("[^/]+");
        } else {
            for c in segment.chars() {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    regex.push(c);
                } else {
                    regex.push('\\');
                    regex.push(c);
                }
            }
        }
    }
    regex.push('$');
    regex
}

/// A problem+json body (RFC 9457) nginx returns itself.
fn problem(status: u16, title: &str, detail: &str) -> String {
    serde_json::json!({"type": "about:blank", "title": title, "status": status, "detail": detail})
        .to_string()
        .replace('\'', "\\'")
}

/// The nginx configuration.
pub fn render(config: &GatewayConfig) -> anyhow::Result<String> {
    config.validate()?;
    let routes = routes()?;
    let dir = config.dir.display();
    let mut out = String::new();
    let secs = |d: Duration| format!("{}s", d.as_secs());
    writeln!(
        out,
        "# Generated by the harness from terraform/modules/api/routes.json (harness/src/gateway.rs);\n\
         # edits here are overwritten.\n\
         # A master and one worker: the master reloads the configuration (SIGHUP) when replicas\n\
         # join or leave, and the old worker finishes its requests before it exits.\n\
         daemon off;\nmaster_process on;\nworker_processes 1;\n\
         worker_shutdown_timeout {};\nerror_log stderr notice;\npid {dir}/nginx.pid;\n\
         worker_rlimit_nofile 16384;\nevents {{ worker_connections 8192; }}\n\nhttp {{",
        secs(WORKER_SHUTDOWN_TIMEOUT)
    )?;
    writeln!(
        out,
        "    client_body_temp_path {dir}/tmp/body;\n    proxy_temp_path {dir}/tmp/proxy;\n\
         \x20   fastcgi_temp_path {dir}/tmp/fastcgi;\n    uwsgi_temp_path {dir}/tmp/uwsgi;\n\
         \x20   scgi_temp_path {dir}/tmp/scgi;\n\
         \x20   client_max_body_size {MAX_BODY};\n    client_body_buffer_size {MAX_BODY};\n\
         \x20   proxy_max_temp_file_size 0;\n    server_tokens off;\n\
         \x20   # The client's X-Request-Id, else nginx's own: the services log the id they get.\n\
         \x20   map $http_x_request_id $gateway_request_id {{ \"\" $request_id; default $http_x_request_id; }}\n\
         \x20   map $http_idempotency_key $has_idempotency_key {{ \"\" 0; default 1; }}\n\
         \x20   log_format gateway escape=json '{{\"time\":\"$time_iso8601\",\"request_id\":\"$gateway_request_id\",'\n\
         \x20       '\"method\":\"$request_method\",\"uri\":\"$request_uri\",\"status\":$status,'\n\
         \x20       '\"upstream\":\"$upstream_addr\",\"upstream_status\":\"$upstream_status\",'\n\
         \x20       '\"request_time\":$request_time}}';\n\
         \x20   access_log {} gateway buffer=64k flush=1s;\n\
         \x20   # One bucket for the whole gateway, like the stage-wide throttling of API Gateway.\n\
         \x20   limit_req_zone $server_name zone=stage:1m rate={}r/s;\n\
         \x20   limit_req_status 429;\n\
         \x20   proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n\
         \x20   proxy_set_header Host $http_host;\n\
         \x20   proxy_set_header X-Request-Id $gateway_request_id;\n\
         \x20   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \x20   proxy_connect_timeout {};\n    proxy_send_timeout {};\n    proxy_read_timeout {};\n\
         \x20   # Another replica on a failed connection, a timeout or a 502/504; a service's own\n\
         \x20   # 503 is its answer (a shared dependency is down). nginx itself never resends a\n\
         \x20   # POST that reached a replica (see the idempotent locations).\n\
         \x20   proxy_next_upstream error timeout http_502 http_504;\n\
         \x20   proxy_next_upstream_timeout {};\n",
        config.access_log.display(),
        config.rate_limit,
        secs(CONNECT_TIMEOUT),
        secs(READ_TIMEOUT),
        secs(READ_TIMEOUT),
        secs(READ_TIMEOUT),
    )?;
    for (service, replicas) in &config.upstreams {
        writeln!(
            out,
            "    upstream {service} {{\n{}        keepalive 64;\n        keepalive_timeout {};\n    }}",
            upstream_servers(replicas),
            secs(UPSTREAM_KEEPALIVE)
        )?;
    }
    if let Some(internal) = &config.ledger_internal {
        writeln!(
            out,
            "    # The ledger's internal port (digests, replays) over its replicas, for the\n\
             \x20   # consolidation's reconciler only: no route of the public server reaches it.\n\
             \x20   upstream ledger_internal {{\n{}        keepalive 16;\n    }}\n\
             \x20   server {{\n        listen {};\n        server_name ledger-internal;\n\
             \x20       access_log off;\n        proxy_next_upstream_tries 2;\n\
             \x20       location / {{ proxy_pass http://ledger_internal; }}\n    }}",
            upstream_servers(&internal.upstreams),
            internal.listen
        )?;
    }
    writeln!(
        out,
        "\n    server {{\n        listen {};\n        server_name gateway;\n\
         \x20       limit_req zone=stage burst={} nodelay;\n\
         \x20       error_page 429 = @throttled;\n        error_page 502 503 504 = @unavailable;\n\
         \x20       error_page 404 = @not_found;\n",
        config.listen, config.burst_limit
    )?;
    // One location per path; the methods are the service's business (it answers 405).
    let mut by_path: BTreeMap<String, (Service, bool)> = BTreeMap::new();
    for route in &routes {
        let entry = by_path
            .entry(location_regex(&route.path))
            .or_insert_with(|| (route.service, false));
        anyhow::ensure!(
            entry.0 == route.service,
            "path {} is routed to two services",
            route.path
        );
        entry.1 |= route.idempotency_key;
    }
    let tries = |service: &Service| config.upstreams.get(service).map_or(1, Vec::len).max(2);
    for (regex, (service, idempotent)) in &by_path {
        writeln!(out, "        location ~ {regex} {{")?;
        if *idempotent {
            writeln!(
                out,
                "            # A POST with Idempotency-Key may be resent: the ledger replays it.\n\
                 \x20           if ($has_idempotency_key) {{ rewrite ^(.*)$ /_idempotent/{service}$1 last; }}"
            )?;
        }
        writeln!(
            out,
            "            proxy_next_upstream_tries {};\n            proxy_pass http://{service};\n        }}",
            tries(service)
        )?;
    }
    let idempotent_services: std::collections::BTreeSet<&Service> = by_path
        .values()
        .filter(|(_, idempotent)| *idempotent)
        .map(|(service, _)| service)
        .collect();
    for service in idempotent_services {
        writeln!(
            out,
            "        location ^~ /_idempotent/{service}/ {{\n            internal;\n\
             \x20           rewrite ^/_idempotent/{service}(/.*)$ $1 break;\n\
             \x20           proxy_next_upstream error timeout http_502 http_504 non_idempotent;\n\
             \x20           proxy_next_upstream_tries {};\n            proxy_pass http://{service};\n        }}",
            tries(service)
        )?;
    }
    for (name, status, title, detail, retry) in [
        (
            "throttled",
            429,
            "Too Many Requests",
            "the gateway's request rate limit was exceeded; retry after the time in Retry-After",
            true,
        ),
        (
            "unavailable",
            503,
            "Service Unavailable",
            "no replica of the service answered; retry after the time in Retry-After",
            true,
        ),
        (
            "not_found",
            404,
            "Not Found",
            "no route for this path",
            false,
        ),
    ] {
        writeln!(
            out,
            "        location @{name} {{\n            default_type application/problem+json;\n\
             \x20           add_header X-Request-Id $gateway_request_id always;"
        )?;
        if retry {
            writeln!(out, "            add_header Retry-After 1 always;")?;
        }
        writeln!(
            out,
            "            return {status} '{}';\n        }}",
            problem(status, title, detail)
        )?;
    }
    // What else this gateway serves (the page: `crate::page::write`), when anything.
    writeln!(out, "        include {dir}/site/*.conf;")?;
    writeln!(out, "        location / {{ return 404; }}\n    }}\n}}")?;
    Ok(out)
}

/// Writes the configuration under `config.dir` and describes the nginx process serving it.
pub fn process(
    config: &GatewayConfig,
    nginx: &Path,
    log_file: PathBuf,
) -> anyhow::Result<Supervised> {
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        let dir = config.dir.join("tmp").join(sub);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = config.dir.join("nginx.conf");
    std::fs::write(&file, render(config)?)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(Supervised::new(ProcessSpec {
        name: "gateway".into(),
        program: nginx.to_path_buf(),
        args: vec![
            "-p".into(),
            config.dir.display().to_string(),
            "-c".into(),
            file.display().to_string(),
            // The error log before the configuration is read (Debian's default is /var/log).
            "-e".into(),
            "stderr".into(),
        ],
        env: Vec::new(),
        cwd: Some(config.dir.clone()),
        user: None,
        // Logged by the master once the listeners are bound and it starts the worker.
        ready_line: "start worker process".into(),
        stop_signal: Signal::QUIT,
        log_file,
    }))
}

/// A running gateway whose replicas change while it runs: each change rewrites the configuration
/// and reloads nginx (SIGHUP to the master), which starts a worker with the new configuration
/// and lets the old one finish the requests it holds, then exit (within
/// `worker_shutdown_timeout`). Nothing is dropped: the listening socket stays open throughout.
#[derive(Debug)]
pub struct Gateway {
    process: Supervised,
    file: PathBuf,
    config: tokio::sync::Mutex<GatewayConfig>,
}

impl Gateway {
    /// Starts nginx serving `config`; `None` when nginx is not installed.
    pub async fn start(
        config: GatewayConfig,
        log_file: PathBuf,
        timeout: Duration,
    ) -> anyhow::Result<Option<Self>> {
        let Some(nginx) = nginx_binary() else {
            return Ok(None);
        };
        let process = process(&config, &nginx, log_file)?;
        process.start(timeout).await?;
        Ok(Some(Self {
            process,
            file: config.dir.join("nginx.conf"),
            config: tokio::sync::Mutex::new(config),
        }))
    }

    /// The configuration in force.
    pub async fn config(&self) -> GatewayConfig {
        self.config.lock().await.clone()
    }

    /// nginx's own log (its errors, each reload).
    pub fn log_file(&self) -> &Path {
        self.process.log_file()
    }

    /// Serves `upstreams` (and, when there is one, the ledger's internal listener over
    /// `ledger_internal`) from now on. Returns once a worker with the new configuration runs
    /// (every request read from then on follows it) and, when a replica was left out, once
    /// every worker of the previous configuration has finished what it held and exited, so that
    /// no request can reach that replica any more. At once when nothing changes.
    pub async fn update(
        &self,
        upstreams: BTreeMap<Service, Vec<String>>,
        ledger_internal: Vec<String>,
    ) -> anyhow::Result<Reload> {
        let mut config = self.config.lock().await;
        let mut next = config.clone();
        next.upstreams = upstreams;
        if let Some(internal) = &mut next.ledger_internal {
            internal.upstreams = ledger_internal;
        }
        if next.upstreams == config.upstreams && next.ledger_internal == config.ledger_internal {
            return Ok(Reload::default());
        }
        let removed = servers(&config).difference(&servers(&next)).count() > 0;
        let started = std::time::Instant::now();
        std::fs::write(&self.file, render(&next)?)
            .with_context(|| format!("writing {}", self.file.display()))?;
        let master = self.process.pid().context("the gateway is not running")?;
        let old_workers = crate::process::children(master);
        self.process
            .signal_leader(Signal::HUP)
            .context("reloading the gateway")?;
        let deadline = started + WORKER_SHUTDOWN_TIMEOUT + Duration::from_secs(10);
        let mut reload = Reload::default();
        loop {
            let workers = crate::process::children(master);
            if reload.in_force.is_none() && workers.iter().any(|w| !old_workers.contains(w)) {
                reload.in_force = Some(started.elapsed());
            }
            if reload.in_force.is_some() && !removed {
                break;
            }
            if reload.in_force.is_some() && !workers.iter().any(|w| old_workers.contains(w)) {
                reload.old_workers_done = Some(started.elapsed());
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the gateway did not reload within {:?}; its log {}:\n{}",
                deadline - started,
                self.process.log_file().display(),
                crate::process::tail(self.process.log_file(), 10)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        *config = next;
        Ok(reload)
    }

    /// Stops nginx: SIGQUIT lets the worker finish what it holds; killed after `grace`.
    pub async fn stop(&self, grace: Duration) -> anyhow::Result<()> {
        self.process.stop(grace).await
    }
}

/// How long a reload took; both `None` when nothing changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reload {
    /// Until a worker with the new configuration ran: from then on no new request reaches a
    /// replica left out.
    pub in_force: Option<Duration>,
    /// Until the old workers had finished the requests they held and exited (waited for only
    /// when a replica was left out): from then on no request at all reaches it.
    pub old_workers_done: Option<Duration>,
}

/// Every upstream server a configuration names.
fn servers(config: &GatewayConfig) -> std::collections::BTreeSet<&String> {
    config
        .upstreams
        .values()
        .flatten()
        .chain(config.ledger_internal.iter().flat_map(|i| &i.upstreams))
        .collect()
}

/// Debian's nginx binary, when installed (`ci/install-deps.sh` installs it).
pub fn nginx_binary() -> Option<PathBuf> {
    crate::backend::native::which("nginx").or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/nginx");
        sbin.is_file().then_some(sbin)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GatewayConfig {
        GatewayConfig {
            listen: "127.0.0.1:8080".into(),
            upstreams: BTreeMap::from([
                (
                    Service::Ledger,
                    vec!["127.0.0.1:8081".into(), "127.0.0.1:8181".into()],
                ),
                (Service::Consolidation, vec!["127.0.0.1:8082".into()]),
            ]),
            rate_limit: DEFAULT_RATE_LIMIT,
            burst_limit: DEFAULT_BURST_LIMIT,
            dir: PathBuf::from("/tmp/gw"),
            access_log: PathBuf::from("/tmp/gw/access.log"),
            ledger_internal: None,
        }
    }

    /// compose.yaml's gateway runs `compose/gateway/nginx.conf`, generated like `harness up`'s:
    /// this test fails when it is stale, and `BLESS=1 cargo test -p harness --lib gateway`
    /// rewrites it.
    #[test]
    fn the_compose_gateway_configuration_is_current() {
        let config = GatewayConfig {
            listen: "8080".into(),
            upstreams: BTreeMap::from([
                (Service::Ledger, vec!["ledger:8081".into()]),
                (Service::Consolidation, vec!["consolidation:8082".into()]),
            ]),
            rate_limit: DEFAULT_RATE_LIMIT,
            burst_limit: DEFAULT_BURST_LIMIT,
            dir: PathBuf::from("/var/lib/gateway"),
            access_log: PathBuf::from("/dev/stdout"),
            ledger_internal: None,
        };
        let expected = render(&config).expect("a configuration");
        let file = crate::paths::workspace_root().join("compose/gateway/nginx.conf");
        if std::env::var_os("BLESS").is_some() {
            std::fs::create_dir_all(file.parent().expect("a folder")).expect("compose/gateway");
            std::fs::write(&file, &expected).expect("writing compose/gateway/nginx.conf");
        }
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            committed == expected,
            "{} is stale: BLESS=1 cargo test -p harness --lib gateway",
            file.display()
        );
    }

    #[test]
    fn path_templates_become_anchored_regexes() {
        assert_eq!(
            location_regex("/v1/merchants/{merchant}/entries/{id}/reversal"),
            "^/v1/merchants/[^/]+/entries/[^/]+/reversal$"
        );
        assert_eq!(location_regex("/v1/admin/{proxy+}"), "^/v1/admin/.+$");
    }

    #[test]
    fn every_route_is_served_by_its_service_and_internal_is_not() {
        let text = render(&config()).expect("a configuration");
        for route in routes().expect("routes.json parses") {
            let location = format!("location ~ {} {{", location_regex(&route.path));
            let at = text.find(&location).unwrap_or_else(|| panic!("{location}"));
            let block = &text[at..at + text[at..].find("\n        }").expect("a closing brace")];
            assert!(
                block.contains(&format!("proxy_pass http://{};", route.service)),
                "{block}"
            );
        }
        assert!(!text.contains("internal/"));
        assert!(text.contains("server 127.0.0.1:8181 max_fails=1 fail_timeout=5s;"));
        assert!(text.contains("rate=500r/s"));
        assert!(text.contains("burst=1000 nodelay"));
    }

    #[test]
    fn only_posts_with_an_idempotency_key_to_the_ledgers_posts_are_resent() {
        let text = render(&config()).expect("a configuration");
        // One internal location resends (non_idempotent), reached from the two ledger POSTs.
        assert_eq!(text.matches("non_idempotent").count(), 1);
        assert_eq!(text.matches("/_idempotent/ledger$1 last").count(), 2);
        let mut resent = routes()
            .expect("routes.json parses")
            .into_iter()
            .filter(|r| r.idempotency_key)
            .map(|r| r.path)
            .collect::<Vec<_>>();
        resent.sort();
        assert_eq!(
            resent,
            [
                "/v1/merchants/{merchant}/entries",
                "/v1/merchants/{merchant}/entries/{id}/reversal"
            ]
        );
        // The admin POSTs (DLQ redrive, reconcile) are never resent once sent.
        let admin = &text[text.find("location ~ ^/v1/admin/").expect("admin")..];
        let admin = &admin[..admin.find("\n        }").expect("a closing brace")];
        assert!(!admin.contains("_idempotent"), "{admin}");
    }

    #[test]
    fn a_service_without_replicas_is_refused() {
        let mut config = config();
        config.upstreams.remove(&Service::Consolidation);
        assert!(render(&config).is_err());
    }
}
