//! Network faults on a service→dependency link, through a TCP proxy the harness owns (the
//! Toxiproxy model; see docs/adr/0009-fault-proxy.md for why it is our own).
//!
//! A [`FaultProxy`] listens on a free local port and forwards every connection to one upstream
//! (a dependency's address). A service is pointed at the proxy instead of the dependency
//! ([`FaultProxy::url`]), and faults are switched on and off while it runs:
//!
//! - latency with jitter, and a bandwidth limit, on what the dependency sends back (as
//!   Toxiproxy's downstream toxics: a request/response round trip pays the latency once);
//! - blackhole: connections are accepted and kept, but nothing is forwarded either way; what
//!   was sent stays in the kernel's buffers and flows once healed (Toxiproxy's `timeout` toxic
//!   with timeout 0);
//! - reset: every connection, open or new, is reset (RST);
//! - refuse: the port is closed (connections are refused) and open connections are reset;
//! - pg-recovering (PostgreSQL links only): open connections are reset and every new one is
//!   answered as a server in recovery answers its startup (`FATAL 57P03 the database system is
//!   in recovery mode`), as while Aurora promotes a reader after a failover;
//! - heal: all of the above off; a refused port listens again on the same number.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Service;
use crate::backend::Dependency;

/// One service's connection to one dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Link {
    /// Who connects.
    pub service: Service,
    /// To what.
    pub dependency: Dependency,
}

impl Link {
    /// The link from `service` to `dependency`.
    pub fn new(service: Service, dependency: Dependency) -> Self {
        Self {
            service,
            dependency,
        }
    }

    /// Every link `harness up` proxies (the ledger has no Redis).
    pub fn all() -> Vec<Link> {
        let mut links = vec![
            Link::new(Service::Ledger, Dependency::Postgres),
            Link::new(Service::Ledger, Dependency::Sqs),
        ];
        links.extend(Dependency::ALL.map(|d| Link::new(Service::Consolidation, d)));
        links
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}→{}", self.service, self.dependency)
    }
}

/// A fault on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFault {
    /// Delay what the dependency sends back by `latency` ± up to `jitter`.
    Latency {
        /// Mean delay.
        latency: Duration,
        /// Largest deviation either way.
        jitter: Duration,
    },
    /// Let through at most this many bytes per second from the dependency.
    Bandwidth {
        /// Rate, bytes per second (> 0).
        bytes_per_second: u64,
    },
    /// Accept connections, never forward anything.
    Blackhole,
    /// Reset every connection.
    Reset,
    /// PostgreSQL only: reset open connections and refuse new ones at startup with
    /// `FATAL 57P03 the database system is in recovery mode`.
    PgRecovering,
    /// Close the port.
    Refuse,
    /// Remove every fault.
    Heal,
}

impl NetFault {
    /// `millis` of latency with a tenth of it as jitter (the fault matrices use 200 ms).
    pub fn latency_ms(millis: u64) -> Self {
        Self::Latency {
            latency: Duration::from_millis(millis),
            jitter: Duration::from_millis(millis / 10),
        }
    }
}

/// One test per cell of a fault matrix: `fault_cell!(name, check, fault)` is a `#[tokio::test]`
/// named `name` that runs `check(fault).await`, so each service × dependency × fault states its
/// expected outcome in its name and runs in parallel with the others.
#[macro_export]
macro_rules! fault_cell {
    ($name:ident, $check:ident, $fault:expr) => {
        #[tokio::test]
        async fn $name() {
            $check($fault).await;
        }
    };
}

impl std::str::FromStr for NetFault {
    type Err = anyhow::Error;
    /// `latency 300ms [jitter 50ms]`, `bandwidth 10000` (bytes/s), `blackhole`, `reset`,
    /// `refuse`, `heal`.
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            ["latency", latency] => Ok(Self::Latency {
                latency: parse_duration(latency)?,
                jitter: Duration::ZERO,
            }),
            ["latency", latency, "jitter", jitter] | ["latency", latency, jitter] => {
                Ok(Self::Latency {
                    latency: parse_duration(latency)?,
                    jitter: parse_duration(jitter)?,
                })
            }
            ["bandwidth", rate] => {
                let bytes_per_second: u64 = rate
                    .parse()
                    .with_context(|| format!("{rate:?} is not bytes per second"))?;
                anyhow::ensure!(bytes_per_second > 0, "bandwidth must be > 0");
                Ok(Self::Bandwidth { bytes_per_second })
            }
            ["blackhole"] => Ok(Self::Blackhole),
            ["reset"] => Ok(Self::Reset),
            ["refuse"] => Ok(Self::Refuse),
            ["pg-recovering"] => Ok(Self::PgRecovering),
            ["heal"] => Ok(Self::Heal),
            _ => anyhow::bail!(
                "unknown fault {s:?}: latency <d> [jitter <d>], bandwidth <bytes/s>, blackhole, \
                 reset, refuse, pg-recovering, heal"
            ),
        }
    }
}

/// `300ms`, `2s`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let bad = || format!("{s:?} is not a duration (300ms, 2s)");
    if let Some(ms) = s.strip_suffix("ms") {
        return Ok(Duration::from_millis(ms.parse().with_context(bad)?));
    }
    if let Some(secs) = s.strip_suffix('s') {
        return Ok(Duration::from_secs_f64(secs.parse().with_context(bad)?));
    }
    Ok(Duration::from_millis(s.parse().with_context(bad)?))
}

/// The faults in force on a proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Toxics {
    /// Mean delay and jitter of downstream data.
    pub latency: Option<(Duration, Duration)>,
    /// Downstream rate limit.
    pub bandwidth: Option<u64>,
    /// Nothing forwarded.
    pub blackhole: bool,
    /// Connections reset.
    pub reset: bool,
    /// Port closed.
    pub refuse: bool,
    /// Answered as a PostgreSQL in recovery.
    pub pg_recovering: bool,
}

impl Toxics {
    fn apply(&mut self, fault: NetFault) {
        match fault {
            NetFault::Latency { latency, jitter } => self.latency = Some((latency, jitter)),
            NetFault::Bandwidth { bytes_per_second } => self.bandwidth = Some(bytes_per_second),
            NetFault::Blackhole => self.blackhole = true,
            NetFault::Reset => self.reset = true,
            NetFault::Refuse => self.refuse = true,
            NetFault::PgRecovering => self.pg_recovering = true,
            NetFault::Heal => *self = Self::default(),
        }
    }

    fn kills_connections(self) -> bool {
        self.reset || self.refuse || self.pg_recovering
    }
}

impl std::fmt::Display for Toxics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some((latency, jitter)) = self.latency {
            parts.push(format!("latency {latency:?} ± {jitter:?}"));
        }
        if let Some(rate) = self.bandwidth {
            parts.push(format!("bandwidth {rate} B/s"));
        }
        for (on, name) in [
            (self.blackhole, "blackhole"),
            (self.reset, "reset"),
            (self.refuse, "refuse"),
            (self.pg_recovering, "pg-recovering"),
        ] {
            if on {
                parts.push(name.to_string());
            }
        }
        if parts.is_empty() {
            write!(f, "healthy")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// A TCP proxy in front of one upstream, with switchable faults. Dropping it stops it and
/// closes its connections.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    upstream: SocketAddr,
    toxics: watch::Sender<Toxics>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// A healthy proxy on a free port of 127.0.0.1 in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the fault proxy")?;
        let address = listener.local_addr()?;
        let (toxics, watching) = watch::channel(Toxics::default());
        let task = tokio::spawn(accept_loop(listener, address, upstream, watching));
        Ok(Self {
            address,
            upstream,
            toxics,
            task,
        })
    }

    /// A proxy in front of the server `url` names (`postgres://…`, `redis://…`, `http://…`).
    pub async fn for_url(url: &str) -> anyhow::Result<Self> {
        let authority = host_port(url).with_context(|| format!("no host:port in {url}"))?;
        let upstream = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to nothing"))?;
        Self::start(upstream).await
    }

    /// Where the proxy listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `url` with its host and port replaced by the proxy's: the URL to give the service.
    pub fn url(&self, url: &str) -> String {
        replace_host_port(url, &self.address.to_string())
    }

    /// Switches a fault on (or, with [`NetFault::Heal`], every fault off).
    pub fn inject(&self, fault: NetFault) {
        self.toxics.send_modify(|t| t.apply(fault));
        tracing::info!(proxy = %self.address, ?fault, "network fault");
    }

    /// The faults in force.
    pub fn toxics(&self) -> Toxics {
        *self.toxics.borrow()
    }
}

/// The `host:port` of a URL.
fn host_port(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    Some(authority.rsplit_once('@').map_or(authority, |(_, h)| h))
}

/// `url` with its `host:port` replaced by `address`.
pub fn replace_host_port(url: &str, address: &str) -> String {
    match host_port(url) {
        Some(old) => {
            let start = old.as_ptr() as usize - url.as_ptr() as usize;
            format!("{}{address}{}", &url[..start], &url[start + old.len()..])
        }
        None => url.to_string(),
    }
}

async fn accept_loop(
    listener: TcpListener,
    address: SocketAddr,
    upstream: SocketAddr,
    mut toxics: watch::Receiver<Toxics>,
) {
    let mut listener = Some(listener);
    loop {
        let refused = toxics.borrow().refuse;
        match (&listener, refused) {
            (Some(_), true) => {
                // Closing the listener is what makes connects fail with ECONNREFUSED.
                listener = None;
                continue;
            }
            (None, false) => {
                // Healed: listen on the same port again (tokio sets SO_REUSEADDR).
                match TcpListener::bind(address).await {
                    Ok(l) => listener = Some(l),
                    Err(e) => {
                        tracing::warn!(%address, error = %e, "fault proxy cannot listen again");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                continue;
            }
            _ => {}
        }
        let accepted = async {
            match &listener {
                Some(l) => l.accept().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = accepted => {
                if let Some((client, _)) = accepted {
                    tokio::spawn(connection(client, upstream, toxics.clone()));
                }
            }
            changed = toxics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Resets `stream`: SO_LINGER 0, then close, so the peer gets an RST rather than a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut toxics: watch::Receiver<Toxics>) {
    if toxics.borrow().pg_recovering {
        // Bounded: a client that never sends its startup is dropped.
        let _ = tokio::time::timeout(Duration::from_secs(5), answer_recovering(client)).await;
        return;
    }
    if toxics.borrow().kills_connections() {
        reset(client);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut client = client;
    let mut up = vec![0_u8; 16 * 1024];
    let mut down = vec![0_u8; 16 * 1024];
    let killed = loop {
        let now = *toxics.borrow_and_update();
        if now.kills_connections() {
            break true;
        }
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        // Blackholed: read nothing, so nothing moves, until the toxics change.
        let forwarding = !now.blackhole;
        tokio::select! {
            read = client_read.read(&mut up), if forwarding => match read {
                Ok(0) | Err(_) => break false,
                Ok(n) => {
                    if server_write.write_all(&up[..n]).await.is_err() {
                        break false;
                    }
                }
            },
            read = server_read.read(&mut down), if forwarding => match read {
                Ok(0) | Err(_) => break false,
                Ok(n) => {
                    delay(now, n).await;
                    if client_write.write_all(&down[..n]).await.is_err() {
                        break false;
                    }
                }
            },
            changed = toxics.changed() => {
                if changed.is_err() {
                    break true;
                }
            }
        }
    };
    if killed {
        reset(client);
        reset(server);
    }
}

/// PostgreSQL's protocol codes of an `SSLRequest` and a `GSSENCRequest`, which a server
/// answers with one byte (`N`: not supported) before the real startup message.
const PG_SSL_REQUEST: u32 = 80_877_103;
const PG_GSSENC_REQUEST: u32 = 80_877_104;

/// Answers a client's startup as a PostgreSQL server in recovery does: an `ErrorResponse`
/// (FATAL, SQLSTATE 57P03), then the connection closes.
async fn answer_recovering(mut client: TcpStream) -> std::io::Result<()> {
    loop {
        let length = client.read_u32().await?;
        let mut body = vec![0_u8; usize::try_from(length.saturating_sub(4)).unwrap_or(0)];
        client.read_exact(&mut body).await?;
        let code = body
            .get(..4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        if length == 8 && matches!(code, Some(PG_SSL_REQUEST | PG_GSSENC_REQUEST)) {
            client.write_all(b"N").await?;
            continue;
        }
        break;
    }
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "57P03"),
        (b'M', "the database system is in recovery mode"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&u32::try_from(fields.len() + 4).unwrap_or(0).to_be_bytes());
    message.extend_from_slice(&fields);
    client.write_all(&message).await?;
    client.shutdown().await
}

/// The downstream delay for `bytes` under `toxics`: latency ± jitter, plus the time the
/// bandwidth limit takes to let them through.
async fn delay(toxics: Toxics, bytes: usize) {
    let mut wait = Duration::ZERO;
    if let Some((latency, jitter)) = toxics.latency {
        let jitter_ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
        let offset = if jitter_ms == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=2 * jitter_ms)
        };
        wait += (latency + Duration::from_millis(offset)).saturating_sub(jitter);
    }
    if let Some(rate) = toxics.bandwidth {
        wait += Duration::from_secs_f64(bytes as f64 / rate as f64);
    }
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// The proxies of a running stack, one per link, made on first use.
#[derive(Debug, Default)]
pub struct Proxies {
    by_link: tokio::sync::Mutex<HashMap<Link, Arc<FaultProxy>>>,
}

impl Proxies {
    /// The proxy of `link`, started in front of `upstream_url` if it is not running yet.
    pub async fn get_or_start(
        &self,
        link: Link,
        upstream_url: &str,
    ) -> anyhow::Result<Arc<FaultProxy>> {
        let mut by_link = self.by_link.lock().await;
        if let Some(proxy) = by_link.get(&link) {
            return Ok(Arc::clone(proxy));
        }
        let proxy = Arc::new(FaultProxy::for_url(upstream_url).await?);
        by_link.insert(link, Arc::clone(&proxy));
        Ok(proxy)
    }

    /// The proxy of `link`, if started.
    pub async fn get(&self, link: Link) -> Option<Arc<FaultProxy>> {
        self.by_link.lock().await.get(&link).cloned()
    }

    /// Every started link and its faults, in a stable order.
    pub async fn list(&self) -> Vec<(Link, SocketAddr, Toxics)> {
        let mut all: Vec<_> = self
            .by_link
            .lock()
            .await
            .iter()
            .map(|(link, proxy)| (*link, proxy.address(), proxy.toxics()))
            .collect();
        all.sort_by_key(|(link, _, _)| link.to_string());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_pointed_at_the_proxy() {
        assert_eq!(
            replace_host_port("postgres://u:p@127.0.0.1:5432/db?x=1", "127.0.0.1:9"),
            "postgres://u:p@127.0.0.1:9/db?x=1"
        );
        assert_eq!(
            replace_host_port("redis://127.0.0.1:6379", "127.0.0.1:9"),
            "redis://127.0.0.1:9"
        );
        assert_eq!(
            replace_host_port("http://localhost:4566/", "127.0.0.1:9"),
            "http://127.0.0.1:9/"
        );
    }

    #[test]
    fn faults_parse_as_the_cli_spells_them() {
        assert_eq!(
            "latency 300ms".parse::<NetFault>().expect("fault"),
            NetFault::Latency {
                latency: Duration::from_millis(300),
                jitter: Duration::ZERO
            }
        );
        assert_eq!(
            "blackhole".parse::<NetFault>().expect("fault"),
            NetFault::Blackhole
        );
        assert!("wobble".parse::<NetFault>().is_err());
    }
}
