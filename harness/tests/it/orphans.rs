//! No dependency outlives the process that started it, even when that process aborts: no process
//! of the native backend, no container of the containers backend.

use std::path::Path;
use std::time::Duration;

use harness::backend::Backend;
use harness::{Dependency, Stack, StackOptions};

const PIDS_FILE: &str = "HARNESS_TEST_PIDS_FILE";

/// Process state and process group from `/proc/<pid>/stat`; `None` once it is gone.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// Live (non-zombie) processes in any of these process groups.
pub fn survivors(groups: &[i32]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            stat(pid).is_some_and(|(state, pgrp)| state != 'Z' && groups.contains(&pgrp))
        })
        .collect()
}

/// Run by the test below in a child process: starts a stack, records its processes, aborts.
#[tokio::test]
#[ignore = "run as a child process by no_process_outlives_an_aborted_test_process"]
async fn child_starts_a_stack_then_aborts() -> anyhow::Result<()> {
    let Some(file) = std::env::var_os(PIDS_FILE) else {
        return Ok(());
    };
    let stack = Stack::start(StackOptions::default()).await?;
    let record = match stack.backend() {
        Backend::Native(native) => {
            let pids: Vec<String> = Dependency::ALL
                .iter()
                .filter_map(|&d| native.pid(d))
                .map(|p| p.to_string())
                .collect();
            format!("native {}", pids.join(" "))
        }
        Backend::Containers(containers) => format!("containers {}", containers.run()),
        Backend::External(_) => anyhow::bail!("the external backend owns nothing"),
    };
    std::fs::write(Path::new(&file), record)?;
    std::process::abort();
}

#[tokio::test]
async fn nothing_outlives_an_aborted_test_process() -> anyhow::Result<()> {
    if std::env::var("HARNESS_BACKEND").is_ok_and(|b| b == "external") {
        return Ok(());
    }
    let file = std::env::temp_dir().join(format!("harness-pids-{}", uuid::Uuid::new_v4()));
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--ignored",
            "--exact",
            "orphans::child_starts_a_stack_then_aborts",
            "--nocapture",
        ])
        .env(PIDS_FILE, &file)
        .status()
        .await?;
    assert!(!status.success(), "the child was meant to abort");
    let record = std::fs::read_to_string(&file)?;
    let _ = std::fs::remove_file(&file);
    match record.split_once(' ') {
        Some(("native", pids)) => {
            let groups: Vec<i32> = pids
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?;
            assert_eq!(groups.len(), 3, "the child recorded its three dependencies");
            harness::eventually(
                Duration::from_secs(15),
                "the dependencies to exit",
                || async { survivors(&groups).is_empty().then_some(()) },
            )
            .await;
        }
        Some(("containers", run)) => {
            let run = run.trim().to_string();
            harness::eventually(
                Duration::from_secs(30),
                "the aborted child's containers to be removed",
                || async {
                    let left = harness::backend::containers::containers_of_run(&run)
                        .await
                        .ok()?;
                    left.is_empty().then_some(())
                },
            )
            .await;
        }
        _ => anyhow::bail!("the child recorded {record:?}"),
    }
    Ok(())
}
