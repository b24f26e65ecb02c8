//! How `harness ps`, `harness rollout restart` and `harness scale` reach a running cluster: a Unix
//! socket (mode 0600: only the user who runs `up` may restart its services) speaking JSON
//! lines. The client sends one [`Request`]; the server answers with [`Reply`] lines: the
//! replicas for `ps`; for an operation, each event as it happens, then `done` or `failed`.
//! An operation runs in a task of its own: a client that goes away (Ctrl-C) does not stop a
//! rollout half way. ADR 0019 says why a socket and not a control file or signals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::replica::ReplicaStatus;
use super::{Cluster, PROGRESS_DEADLINE};
use crate::Service;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Every replica's status.
    Ps,
    /// [`Cluster::rollout_restart`].
    RolloutRestart {
        /// The service.
        service: Service,
        /// `KEY=VALUE` settings over the template's.
        env: Vec<(String, String)>,
        /// How long to wait for each new replica (seconds; Kubernetes' progress deadline).
        timeout_secs: Option<u64>,
    },
    /// [`Cluster::scale`].
    Scale {
        /// The service.
        service: Service,
        /// Replicas wanted.
        replicas: u16,
    },
}

/// One line of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The answer to [`Request::Ps`].
    Replicas {
        /// By service, then ordinal.
        replicas: Vec<ReplicaStatus>,
    },
    /// An event while an operation runs (any replica's: a crash elsewhere shows too).
    Event {
        /// The event's line.
        line: String,
    },
    /// The operation is done.
    Done,
    /// The request or the operation failed.
    Failed {
        /// Why.
        error: String,
    },
}

/// The control socket of a running cluster; removed when dropped.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// Serves `cluster` on a Unix socket at `path` (a stale socket there is replaced).
    pub fn start(cluster: Arc<Cluster>, path: PathBuf) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(Arc::clone(&cluster), stream));
            }
        });
        Ok(Self { path, task })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(cluster: Arc<Cluster>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let request = match serde_json::from_str::<Request>(&line) {
        Ok(request) => request,
        Err(e) => {
            let _ = send(
                &mut write,
                &Reply::Failed {
                    error: format!("bad request: {e}"),
                },
            )
            .await;
            return;
        }
    };
    let mut events = cluster.subscribe();
    let operation = match request {
        Request::Ps => {
            let replicas = cluster.ps();
            let _ = send(&mut write, &Reply::Replicas { replicas }).await;
            return;
        }
        Request::RolloutRestart {
            service,
            env,
            timeout_secs,
        } => {
            let deadline = timeout_secs.map_or(PROGRESS_DEADLINE, Duration::from_secs);
            let cluster = Arc::clone(&cluster);
            tokio::spawn(async move { cluster.rollout_restart(service, env, deadline).await })
        }
        Request::Scale { service, replicas } => {
            let cluster = Arc::clone(&cluster);
            tokio::spawn(async move { cluster.scale(service, replicas).await })
        }
    };
    tokio::pin!(operation);
    let outcome = loop {
        tokio::select! {
            outcome = &mut operation => break outcome,
            event = events.recv() => match event {
                Ok(event) => {
                    // The client may be gone; the operation goes on regardless.
                    let _ = send(&mut write, &Reply::Event { line: event.to_string() }).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
        }
    };
    // The events the operation sent last are waiting in the channel.
    while let Ok(event) = events.try_recv() {
        let _ = send(
            &mut write,
            &Reply::Event {
                line: event.to_string(),
            },
        )
        .await;
    }
    let reply = match outcome {
        Ok(Ok(())) => Reply::Done,
        Ok(Err(e)) => Reply::Failed {
            error: format!("{e:#}"),
        },
        Err(e) => Reply::Failed {
            error: format!("the operation panicked: {e}"),
        },
    };
    let _ = send(&mut write, &reply).await;
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await
}

/// Sends `request` to the cluster at `path`, passes each event line to `on_event`, and returns
/// the final reply ([`Reply::Replicas`], [`Reply::Done`] or [`Reply::Failed`]).
pub async fn request(
    path: &Path,
    request: &Request,
    mut on_event: impl FnMut(&str),
) -> anyhow::Result<Reply> {
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "connecting to the running `harness up` at {} (is it running?)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<Reply>(&line)
            .with_context(|| format!("an answer of `harness up` it does not understand: {line}"))?
        {
            Reply::Event { line } => on_event(&line),
            last => return Ok(last),
        }
    }
    anyhow::bail!("`harness up` closed the control connection without an answer")
}

#[cfg(test)]
mod tests {
    use super::{Reply, Request};
    use crate::Service;

    #[test]
    fn requests_and_replies_are_one_json_line_each() {
        let request = Request::RolloutRestart {
            service: Service::Consolidation,
            env: vec![("RUST_LOG".into(), "debug".into())],
            timeout_secs: Some(20),
        };
        let line = serde_json::to_string(&request).expect("serialises");
        assert!(!line.contains('\n'));
        assert_eq!(
            serde_json::from_str::<Request>(&line).expect("parses"),
            request
        );
        let reply: Reply =
            serde_json::from_str(r#"{"reply":"failed","error":"no"}"#).expect("parses");
        assert_eq!(reply, Reply::Failed { error: "no".into() });
    }
}
