//! The trivial axum handler: the most requests per second goose's setup gets from any HTTP
//! service on this machine now ([`rate`]), and the same handler served apart from goose
//! ([`Apart`]), so that its own CPU per request can be read.

use std::sync::Arc;
use std::time::Duration;

use goose::prelude::*;

use crate::kit::goose::{Attack, Step, transaction};
use crate::kit::report::Figure;

fn router() -> ::axum::Router {
    ::axum::Router::new().route("/", ::axum::routing::get(|| async { "ok" }))
}

fn hello(user: &mut GooseUser, _: Arc<()>) -> Step<'_> {
    Box::pin(async move {
        let _ = user.get("/").await?;
        Ok(())
    })
}

/// goose requesting the trivial handler's `/`, named `name`.
pub fn scenario(name: &str) -> Scenario {
    scenario!(name).register_transaction(transaction(&Arc::new(()), hello))
}

/// A trivial axum handler's rate under goose's 64 users (the read scenarios' setup), unthrottled
/// for `seconds`.
pub async fn rate(seconds: usize) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { ::axum::serve(listener, router()).await });
    let run = Attack {
        host: &address,
        users: 64,
        rate: 0,
        seconds,
        report: "ceiling-axum",
    }
    .run(scenario("trivial"))
    .await;
    server.abort();
    Ok(run?.rate)
}

/// [`rate`], also pushed to `figures`.
pub async fn measure(seconds: usize, figures: &mut Vec<Figure>) -> anyhow::Result<f64> {
    let rate = rate(seconds).await?;
    figures.push(Figure::new(
        "ceilings",
        "trivial axum handler, goose 64 users",
        rate,
        "req/s",
    ));
    Ok(rate)
}

/// The trivial handler served by a tokio runtime of its own (two workers) in this process, all
/// its threads named `threads`: their CPU time ([`Apart::cpu`]) is the handler's alone, told
/// apart from goose's on the main runtime beside it.
#[derive(Debug)]
pub struct Apart {
    /// Its base URL.
    pub address: String,
    threads: &'static str,
    stop: tokio::sync::oneshot::Sender<()>,
    server: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Apart {
    /// Serves the handler on a free port; `threads` is at most 15 bytes (the kernel's `comm`).
    pub fn start(threads: &'static str) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::Builder::new().name(threads.into()).spawn(
            move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(threads)
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    ::axum::serve(listener, router())
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await?;
                    anyhow::Ok(())
                })
            },
        )?;
        Ok(Self {
            address,
            threads,
            stop,
            server,
        })
    }

    /// The CPU time its threads have used so far. Read it before [`Apart::stop`]: a thread's
    /// time leaves `/proc/self/task` with it.
    pub fn cpu(&self) -> Option<Duration> {
        harness::cpu::threads(|name| name == self.threads)
    }

    /// Stops serving and waits for its threads.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let server = self.server;
        let _ = tokio::task::spawn_blocking(move || server.join()).await;
    }
}
