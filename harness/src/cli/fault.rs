//! `harness fault`: network faults on the links of a running `harness up`.
//!
//! `up` puts a [`FaultProxy`] on every service→dependency link and serves a tiny line protocol
//! on a local port whose address it writes to [`control_file`]: one request line
//! (`list`, or `<service> <dependency> <fault…>`), answered with text lines, then closed.
//! `harness fault …` is the client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::Service;
use crate::backend::Dependency;
use crate::netfault::{FaultProxy, Link, NetFault};
use crate::stack::Stack;

/// Arguments of `harness fault`.
#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    /// `list`, or the service: `ledger`, `consolidation`.
    target: String,
    /// The dependency: `postgres`, `redis`, `sqs`.
    dependency: Option<String>,
    /// `latency 300ms [jitter 50ms]`, `bandwidth <bytes/s>`, `blackhole`, `reset`, `refuse`,
    /// `heal`.
    fault: Vec<String>,
}

/// Where a running `up` writes its fault control address.
pub fn control_file() -> PathBuf {
    crate::paths::harness_dir().join("up").join("faults.addr")
}

/// Sends the command to the running `up` and prints its answer.
pub(super) async fn run(args: FaultArgs) -> anyhow::Result<()> {
    let line = match (args.target.as_str(), &args.dependency) {
        ("list", None) => "list".to_string(),
        (service, Some(dependency)) => {
            // Checked here too, for an error before connecting.
            service.parse::<Service>()?;
            dependency.parse::<Dependency>()?;
            let fault = args.fault.join(" ");
            fault.parse::<NetFault>()?;
            format!("{service} {dependency} {fault}")
        }
        _ => anyhow::bail!(
            "usage: harness fault list | harness fault <service> <dependency> <fault>"
        ),
    };
    let file = control_file();
    let address = std::fs::read_to_string(&file)
        .with_context(|| format!("reading {} (is `harness up` running?)", file.display()))?;
    let mut stream = TcpStream::connect(address.trim())
        .await
        .with_context(|| format!("connecting to `harness up` at {}", address.trim()))?;
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer).await?;
    print!("{answer}");
    anyhow::ensure!(!answer.starts_with("error"), "the fault was not applied");
    Ok(())
}

/// The proxies of a running `up` and the server of its control port.
#[derive(Debug)]
pub(super) struct FaultControl {
    proxies: Arc<HashMap<Link, Arc<FaultProxy>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultControl {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(control_file());
    }
}

impl FaultControl {
    /// Starts a proxy on every link and the control server.
    pub(super) async fn start(stack: &Stack) -> anyhow::Result<Self> {
        let mut proxies = HashMap::new();
        for link in Link::all() {
            proxies.insert(link, stack.proxy(link).await?);
        }
        let proxies = Arc::new(proxies);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let file = control_file();
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&file, listener.local_addr()?.to_string())
            .with_context(|| format!("writing {}", file.display()))?;
        let task = tokio::spawn(serve(listener, Arc::clone(&proxies)));
        Ok(Self { proxies, task })
    }

    /// `url` of `dependency` as `service` must use it: through the link's proxy.
    pub(super) fn url(&self, service: Service, dependency: Dependency, url: &str) -> String {
        match self.proxies.get(&Link::new(service, dependency)) {
            Some(proxy) => proxy.url(url),
            None => url.to_string(),
        }
    }
}

async fn serve(listener: TcpListener, proxies: Arc<HashMap<Link, Arc<FaultProxy>>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let proxies = Arc::clone(&proxies);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let answer = match command(&proxies, line.trim()) {
                Ok(answer) => answer,
                Err(e) => format!("error: {e:#}\n"),
            };
            let _ = write.write_all(answer.as_bytes()).await;
        });
    }
}

fn command(proxies: &HashMap<Link, Arc<FaultProxy>>, line: &str) -> anyhow::Result<String> {
    if line == "list" {
        let mut rows: Vec<(String, SocketAddr, String)> = proxies
            .iter()
            .map(|(link, p)| (link.to_string(), p.address(), p.toxics().to_string()))
            .collect();
        rows.sort();
        return Ok(rows
            .into_iter()
            .map(|(link, address, toxics)| format!("{link:<26} {address:<21} {toxics}\n"))
            .collect());
    }
    let mut words = line.splitn(3, ' ');
    let service: Service = words.next().unwrap_or_default().parse()?;
    let dependency: Dependency = words.next().unwrap_or_default().parse()?;
    let fault: NetFault = words.next().unwrap_or_default().parse()?;
    let link = Link::new(service, dependency);
    let proxy = proxies
        .get(&link)
        .with_context(|| format!("{link} is not a link (the ledger has no Redis)"))?;
    proxy.inject(fault);
    Ok(format!("{service} {dependency}: {}\n", proxy.toxics()))
}
