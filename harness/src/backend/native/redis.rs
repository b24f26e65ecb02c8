//! `redis-server` on a free port, without persistence: Redis is a cache here.

use anyhow::Context;

use super::host::which;
use crate::paths;
use crate::process::{ProcessSpec, Signal};

pub(super) fn spec(port: u16, run: &str) -> anyhow::Result<ProcessSpec> {
    let program = which("redis-server").context(
        "redis-server was not found on PATH; install it with: apt-get install -y redis-server",
    )?;
    Ok(ProcessSpec {
        name: "redis".into(),
        program,
        args: [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--maxclients",
            "10000",
        ]
        .map(String::from)
        .to_vec(),
        env: Vec::new(),
        cwd: None,
        user: None,
        ready_line: "Ready to accept connections".into(),
        stop_signal: Signal::TERM,
        log_file: paths::logs_dir().join(format!("redis-{run}.log")),
    })
}
