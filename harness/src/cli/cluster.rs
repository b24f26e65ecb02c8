//! `harness ps`, `harness rollout restart <service>` and `harness scale <service> N`: the
//! cluster of a running `harness up`, through its control socket ([`crate::cluster::control`]).

use std::time::Duration;

use clap::{Args, Subcommand};

use crate::Service;
use crate::cluster::ReplicaStatus;
use crate::cluster::control::{self, Reply, Request};
use crate::paths;

/// Arguments of `harness ps`.
#[derive(Debug, Args)]
pub(super) struct PsArgs {
    /// Print the replicas as JSON (for scripts) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `harness rollout`.
#[derive(Debug, Args)]
pub(super) struct RolloutArgs {
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
    /// Replace the service's replicas one at a time: a new one starts and joins the gateway
    /// once ready, then an old one leaves the gateway and drains (maxSurge 1, maxUnavailable 0).
    Restart {
        /// `ledger` or `consolidation`.
        service: Service,
        /// A setting for the new replicas, `KEY=VALUE` (repeat for several), kept for later
        /// restarts and scale-ups when the rollout succeeds.
        #[arg(long = "env", value_parser = parse_setting)]
        env: Vec<(String, String)>,
        /// How long each new replica may take to be ready before the rollout stops (and the
        /// replicas not yet replaced keep serving), e.g. `90s`.
        #[arg(long, value_parser = crate::netfault::parse_duration)]
        timeout: Option<Duration>,
    },
}

/// Arguments of `harness scale`.
#[derive(Debug, Args)]
pub(super) struct ScaleArgs {
    /// `ledger` or `consolidation`.
    service: Service,
    /// Replicas to run (1 to 8).
    #[arg(value_parser = clap::value_parser!(u16).range(1..=i64::from(crate::cluster::MAX_REPLICAS)))]
    replicas: u16,
}

fn parse_setting(text: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("{text:?} is not KEY=VALUE"))?;
    anyhow::ensure!(!key.is_empty(), "{text:?} has no KEY");
    Ok((key.to_string(), value.to_string()))
}

pub(super) async fn ps(args: PsArgs) -> anyhow::Result<()> {
    let reply = control::request(&paths::up_control_socket(), &Request::Ps, |_| {}).await?;
    let Reply::Replicas { replicas } = reply else {
        anyhow::bail!("`harness up` answered {reply:?} to ps");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&replicas)?);
    } else {
        print!("{}", table(&replicas));
    }
    Ok(())
}

pub(super) async fn rollout(args: RolloutArgs) -> anyhow::Result<()> {
    let RolloutCommand::Restart {
        service,
        env,
        timeout,
    } = args.command;
    operation(Request::RolloutRestart {
        service,
        env,
        timeout_secs: timeout.map(|t| t.as_secs().max(1)),
    })
    .await
}

pub(super) async fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    operation(Request::Scale {
        service: args.service,
        replicas: args.replicas,
    })
    .await
}

/// Sends an operation and prints its events as they come.
async fn operation(request: Request) -> anyhow::Result<()> {
    let reply = control::request(&paths::up_control_socket(), &request, |line| {
        println!("{line}");
    })
    .await?;
    match reply {
        Reply::Done => Ok(()),
        Reply::Failed { error } => anyhow::bail!(error),
        other => anyhow::bail!("`harness up` answered {other:?}"),
    }
}

/// `harness ps`'s table: what `kubectl get pods` shows, and why a replica last exited.
fn table(replicas: &[ReplicaStatus]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "STATE".into(),
        "GATEWAY".into(),
        "RESTARTS".into(),
        "PORT".into(),
        "PID".into(),
        "AGE".into(),
        "LAST EXIT".into(),
    ]];
    for r in replicas {
        let state = match r.restart_in_secs {
            Some(secs) => format!("{} (restart in {:.0} s)", r.phase, secs.ceil()),
            None => r.phase.to_string(),
        };
        let last_exit = r.last_exit.as_ref().map_or_else(String::new, |exit| {
            let mut text = format!(
                "{}, {} ago",
                exit.status,
                age(Duration::from_secs_f64(exit.secs_ago))
            );
            if let Some(reason) = &exit.reason {
                text.push_str(": ");
                text.push_str(reason);
            }
            text
        });
        rows.push([
            r.name.clone(),
            state,
            if r.in_gateway { "in" } else { "out" }.into(),
            r.restarts.to_string(),
            r.port.to_string(),
            r.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            age(Duration::from_secs_f64(r.age_secs)),
            last_exit,
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `42s`, `3m`, `2h` (kubectl's ages).
fn age(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}
