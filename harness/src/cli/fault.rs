//! `harness fault`: network faults on the links of a running `harness up`, and SQS faults in
//! its SQS fault layer ([`crate::sqs_faults`]).
//!
//! Failovers too: `harness fault <service> postgres read-only|writable` (the service's
//! database: sessions terminated, new ones read-only), `harness fault consolidation redis
//! read-only|writable` (Redis demoted to a replica: `READONLY`), and the network fault
//! `pg-recovering` (FATAL 57P03 at connect); see [`crate::failover`].
//!
//! `up` puts a [`FaultProxy`] on every service→dependency link and serves a tiny line protocol
//! on a local port whose address it writes to [`control_file`]: one request line
//! (`list`, `heal`, `<service> <dependency> <fault…>`, or `sqs <operation> <fault…>
//! [--rate p|--next n] [--queue name]`, `sqs heal [operation]`), answered with text lines, then
//! closed. `harness fault …` is the client.

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
use crate::sqs_faults::{Operation, Rule, SqsFaults};
use crate::stack::Stack;

/// Arguments of `harness fault`.
#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    /// `list`, `heal` (every fault off), `sqs` (an SQS fault), or the service: `ledger`,
    /// `consolidation`.
    target: String,
    /// The dependency: `postgres`, `redis`, `sqs`. After `sqs`: the operation
    /// (`SendMessageBatch`, `ReceiveMessage`, ..., `any`), or `heal`.
    dependency: Option<String>,
    /// `latency 300ms [jitter 50ms]`, `bandwidth <bytes/s>`, `blackhole`, `reset`, `refuse`,
    /// `pg-recovering` (postgres only: FATAL 57P03 at connect), `heal`; or a failover:
    /// `read-only` (postgres: the service's database, sessions terminated, writes 25006; redis:
    /// the whole server demoted, writes `READONLY`) and `writable` (back). After `sqs <operation>`: `throttle`, `InternalFailure`, `ServiceUnavailable`,
    /// `ThrottlingException`, `ReceiptHandleIsInvalid`, `MessageNotInflight`, `OverLimit`,
    /// `fail-entries <share> [<error>]`, `drop-answer`, `duplicate`, `reorder`,
    /// `latency <duration>`.
    fault: Vec<String>,
    /// SQS faults: apply to each matching request with this probability (default: every one).
    #[arg(long, conflicts_with = "next")]
    rate: Option<f64>,
    /// SQS faults: apply to the next N matching requests only.
    #[arg(long)]
    next: Option<u32>,
    /// SQS faults: only requests about this queue (default: every queue).
    #[arg(long)]
    queue: Option<String>,
}

/// Where a running `up` writes its fault control address.
pub fn control_file() -> PathBuf {
    crate::paths::harness_dir().join("up").join("faults.addr")
}

/// Sends the command to the running `up` and prints its answer.
pub(super) async fn run(args: FaultArgs) -> anyhow::Result<()> {
    let line = match (args.target.as_str(), &args.dependency) {
        ("list", None) => "list".to_string(),
        ("heal", None) => "heal".to_string(),
        ("sqs", Some(operation)) => {
            let mut words = vec!["sqs".to_string(), operation.clone()];
            words.extend(args.fault.iter().cloned());
            for (option, value) in [
                ("--rate", args.rate.map(|r| r.to_string())),
                ("--next", args.next.map(|n| n.to_string())),
                ("--queue", args.queue.clone()),
            ] {
                if let Some(value) = value {
                    words.extend([option.to_string(), value]);
                }
            }
            // Checked here too, for an error before connecting.
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            sqs_command(&words[1..])?;
            words.join(" ")
        }
        (service, Some(dependency)) => {
            anyhow::ensure!(
                args.rate.is_none() && args.next.is_none() && args.queue.is_none(),
                "--rate, --next and --queue are for SQS faults (harness fault sqs ...)"
            );
            // Checked here too, for an error before connecting.
            service.parse::<Service>()?;
            dependency.parse::<Dependency>()?;
            let fault = args.fault.join(" ");
            if failover_state(&fault).is_none() {
                fault.parse::<NetFault>()?;
            }
            format!("{service} {dependency} {fault}")
        }
        _ => anyhow::bail!(
            "usage: harness fault list | harness fault heal | harness fault <service> \
             <dependency> <fault> | harness fault sqs <operation> <fault> [--rate p | --next n] \
             [--queue name] | harness fault sqs heal [<operation>]"
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

/// What the control port acts on.
#[derive(Debug)]
struct Controlled {
    proxies: Arc<HashMap<Link, Arc<FaultProxy>>>,
    sqs: SqsFaults,
    /// The dependencies themselves, for failovers.
    endpoints: crate::Endpoints,
}

/// `read-only` → `Some(true)`, `writable` → `Some(false)`: a failover rather than a network
/// fault ([`crate::failover`]).
fn failover_state(fault: &str) -> Option<bool> {
    match fault {
        "read-only" => Some(true),
        "writable" => Some(false),
        _ => None,
    }
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
        let controlled = Arc::new(Controlled {
            proxies: Arc::clone(&proxies),
            sqs: stack.sqs_faults().clone(),
            endpoints: stack.endpoints().clone(),
        });
        let task = tokio::spawn(serve(listener, controlled));
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

async fn serve(listener: TcpListener, controlled: Arc<Controlled>) {
    while let Ok((stream, _)) = listener.accept().await {
        let controlled = Arc::clone(&controlled);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let answer = match command(&controlled, line.trim()).await {
                Ok(answer) => answer,
                Err(e) => format!("error: {e:#}\n"),
            };
            let _ = write.write_all(answer.as_bytes()).await;
        });
    }
}

async fn command(controlled: &Controlled, line: &str) -> anyhow::Result<String> {
    let proxies = &controlled.proxies;
    if line == "list" {
        let mut rows: Vec<(String, SocketAddr, String)> = proxies
            .iter()
            .map(|(link, p)| (link.to_string(), p.address(), p.toxics().to_string()))
            .collect();
        rows.sort();
        let mut answer: String = rows
            .into_iter()
            .map(|(link, address, toxics)| format!("{link:<26} {address:<21} {toxics}\n"))
            .collect();
        answer.push_str(&sqs_listing(&controlled.sqs));
        return Ok(answer);
    }
    if line == "heal" {
        for proxy in proxies.values() {
            proxy.inject(NetFault::Heal);
        }
        let removed = controlled.sqs.heal(None);
        return Ok(format!(
            "every link healthy; {removed} SQS fault(s) removed\n"
        ));
    }
    if let Some(rest) = line.strip_prefix("sqs ") {
        let words: Vec<&str> = rest.split_whitespace().collect();
        return match sqs_command(&words)? {
            SqsCommand::Heal(operation) => {
                let removed = controlled.sqs.heal(operation);
                Ok(format!("{removed} SQS fault(s) removed\n"))
            }
            SqsCommand::Add(rule) => {
                let text = rule.to_string();
                let id = controlled.sqs.add(rule)?;
                Ok(format!("sqs fault {id}: {text}\n"))
            }
        };
    }
    let mut words = line.splitn(3, ' ');
    let service: Service = words.next().unwrap_or_default().parse()?;
    let dependency: Dependency = words.next().unwrap_or_default().parse()?;
    let fault = words.next().unwrap_or_default();
    if let Some(read_only) = failover_state(fault) {
        let link = Link::new(service, dependency);
        anyhow::ensure!(
            controlled.proxies.contains_key(&link),
            "{link} is not a link (the ledger has no Redis)"
        );
        let endpoints = &controlled.endpoints;
        match dependency {
            Dependency::Postgres => {
                let url = crate::scope::database_url(&endpoints.postgres_url, service.name());
                crate::failover::postgres_read_only(&url, read_only).await?;
            }
            Dependency::Redis => {
                crate::failover::redis_read_only(&endpoints.redis_url, read_only).await?;
            }
            Dependency::Sqs => anyhow::bail!("SQS has no failover here (see harness fault sqs)"),
        }
        return Ok(format!("{service} {dependency}: {fault}\n"));
    }
    let fault: NetFault = fault.parse()?;
    let link = Link::new(service, dependency);
    let proxy = proxies
        .get(&link)
        .with_context(|| format!("{link} is not a link (the ledger has no Redis)"))?;
    proxy.inject(fault);
    Ok(format!("{service} {dependency}: {}\n", proxy.toxics()))
}

/// An SQS fault command.
#[derive(Debug)]
enum SqsCommand {
    /// Remove the rules of an operation (`None`: all of them).
    Heal(Option<Operation>),
    /// Add a rule.
    Add(Rule),
}

/// `heal [<operation>]`, or `<operation> <fault…> [--rate p] [--next n] [--queue name]`.
fn sqs_command(words: &[&str]) -> anyhow::Result<SqsCommand> {
    match words {
        ["heal"] => return Ok(SqsCommand::Heal(None)),
        ["heal", operation] => return Ok(SqsCommand::Heal(Some(operation.parse()?))),
        _ => {}
    }
    let Some((operation, rest)) = words.split_first() else {
        anyhow::bail!("usage: harness fault sqs <operation> <fault> [--rate p | --next n]");
    };
    let mut fault = Vec::new();
    let (mut rate, mut next, mut queue) = (None, None, None);
    let mut rest = rest.iter();
    while let Some(word) = rest.next() {
        let mut value = || {
            rest.next()
                .copied()
                .with_context(|| format!("{word} needs a value"))
        };
        match *word {
            "--rate" => rate = Some(value()?.parse::<f64>().context("--rate takes 0 to 1")?),
            "--next" => next = Some(value()?.parse::<u32>().context("--next takes a count")?),
            "--queue" => queue = Some(value()?.to_string()),
            word => fault.push(word),
        }
    }
    let mut rule = Rule::parse(operation, &fault)?;
    anyhow::ensure!(
        rate.is_none() || next.is_none(),
        "--rate and --next do not go together"
    );
    if let Some(rate) = rate {
        rule = rule.rate(rate);
    }
    if let Some(next) = next {
        rule = rule.next(next);
    }
    if let Some(queue) = queue {
        rule = rule.queue(queue);
    }
    rule.check()?;
    Ok(SqsCommand::Add(rule))
}

/// The SQS rules in force and the requests each queue had, for `harness fault list`.
fn sqs_listing(sqs: &SqsFaults) -> String {
    let mut out = format!("\nSQS fault layer {} → {}\n", sqs.url(), sqs.upstream());
    let rules = sqs.rules();
    if rules.is_empty() {
        out.push_str("  no SQS faults\n");
    }
    for state in rules {
        let left = state
            .remaining
            .map(|n| format!(", {n} left"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {} {}  (applied {}{left})\n",
            state.id, state.rule, state.fired
        ));
    }
    for ((queue, operation), counts) in sqs.all_requests() {
        let queue = if queue.is_empty() {
            "-"
        } else {
            queue.as_str()
        };
        out.push_str(&format!(
            "  {queue:<28} {:<30} {} request(s), {} faulted\n",
            operation.name(),
            counts.requests,
            counts.faulted
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_commands_parse_with_their_options() {
        let SqsCommand::Add(rule) = sqs_command(&[
            "SendMessageBatch",
            "fail-entries",
            "0.3",
            "--rate",
            "0.2",
            "--queue",
            "cashflow-entries",
        ])
        .expect("command") else {
            panic!("not an added rule");
        };
        assert_eq!(
            rule.to_string(),
            "SendMessageBatch fail-entries 0.3 InternalFailure --rate 0.2 --queue cashflow-entries"
        );
        assert!(matches!(
            sqs_command(&["heal", "ReceiveMessage"]).expect("heal"),
            SqsCommand::Heal(Some(Operation::ReceiveMessage))
        ));
        assert!(
            sqs_command(&["ReceiveMessage", "throttle", "--rate", "0.2", "--next", "3"]).is_err()
        );
        assert!(sqs_command(&["SendMessage", "ReceiptHandleIsInvalid"]).is_err());
    }
}
