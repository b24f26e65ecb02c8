//! CPU time from Linux's `/proc`, of a process tree or of this process. Load figures use it to
//! say how busy each part was while a rate was measured; elsewhere (no `/proc`) every reading is
//! `None` and the figures leave it out. The machine's own totals (`/proc/stat`) are not offered:
//! in a virtual machine its idle ticks need not match the wall clock, and a share of them was
//! seen to disagree with the processes' own (scheduler-accurate) times.

use std::time::Duration;

/// CPU time (user + system) used so far by process `root` and its descendants: every live one
/// (PostgreSQL's backends are children of the postmaster, each in a session of its own, so a
/// process group would miss them), and every one that has exited and been waited for (the
/// kernel adds those to their parent's children's times). So the reading only grows: a backend
/// whose connection closed keeps counting.
pub fn process_tree(root: i32) -> Option<Duration> {
    let ticks = clock_ticks()?;
    // (pid, parent, ticks) of every process.
    let processes: Vec<(i32, i32, u64)> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let fields = stat_fields(&entry.path().join("stat"))?;
            let parent = fields.get(1)?.parse::<i32>().ok()?;
            Some((
                pid,
                parent,
                user_and_system(&fields) + waited_children(&fields),
            ))
        })
        .collect();
    let mut tree = vec![root];
    let mut total = 0u64;
    while let Some(pid) = tree.pop() {
        for (child, parent, used) in &processes {
            if *child == pid {
                total += used;
            }
            if *parent == pid {
                tree.push(*child);
            }
        }
    }
    Some(Duration::from_secs_f64(total as f64 / ticks))
}

/// CPU time (user + system) used so far by this process, all threads.
pub fn this_process() -> Option<Duration> {
    let fields = stat_fields(std::path::Path::new("/proc/self/stat"))?;
    Some(Duration::from_secs_f64(
        user_and_system(&fields) as f64 / clock_ticks()?,
    ))
}

/// CPU time used so far by this process's children that exited and were waited for (a
/// `pgbench` run, say), in all: the kernel adds each one's time to its parent's when it is reaped.
pub fn this_process_waited_children() -> Option<Duration> {
    let fields = stat_fields(std::path::Path::new("/proc/self/stat"))?;
    Some(Duration::from_secs_f64(
        waited_children(&fields) as f64 / clock_ticks()?,
    ))
}

/// CPU time used so far by this process's live threads whose name (`comm`, at most 15 bytes)
/// `matches`: a runtime's worker threads carry its name, so the part of this process's time a
/// server in it used can be told from the load generator's beside it.
pub fn threads(matches: impl Fn(&str) -> bool) -> Option<Duration> {
    let ticks = clock_ticks()?;
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if matches(comm.trim_end())
            && let Some(fields) = stat_fields(&entry.path().join("stat"))
        {
            total += user_and_system(&fields);
        }
    }
    Some(Duration::from_secs_f64(total as f64 / ticks))
}

/// The fields of a `/proc/<pid>/stat` after the command name (which may hold spaces and ends at
/// the last `)`): state, ppid, pgrp, ...
fn stat_fields(path: &std::path::Path) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (_, fields) = stat.rsplit_once(')')?;
    Some(fields.split_whitespace().map(str::to_string).collect())
}

/// `cutime + cstime` (the 16th and 17th fields of the whole line): the CPU of the children
/// that exited and were waited for, in clock ticks.
fn waited_children(fields: &[String]) -> u64 {
    let time = |i: usize| fields.get(i).and_then(|t| t.parse::<u64>().ok());
    time(13).unwrap_or(0) + time(14).unwrap_or(0)
}

/// `utime + stime` (the 14th and 15th fields of the whole line), in clock ticks.
fn user_and_system(fields: &[String]) -> u64 {
    let time = |i: usize| fields.get(i).and_then(|t| t.parse::<u64>().ok());
    time(11).unwrap_or(0) + time(12).unwrap_or(0)
}

/// The kernel's clock ticks per second (the unit of `/proc`'s times).
fn clock_ticks() -> Option<f64> {
    let ticks = rustix::param::clock_ticks_per_second();
    (ticks > 0).then_some(ticks as f64)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    /// This thread's CPU time by the kernel's own clock (`CLOCK_THREAD_CPUTIME_ID`), to check
    /// `/proc`'s readings against.
    fn thread_cpu() -> Duration {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(
            u64::try_from(now.tv_sec).unwrap_or_default(),
            u32::try_from(now.tv_nsec).unwrap_or_default(),
        )
    }

    /// A thread that spins for 300 ms of its own CPU (however long that takes on a busy
    /// machine: tests run in parallel) shows as at least that, less a tick or two, in this
    /// process's time and in its tree's.
    #[test]
    fn a_busy_thread_is_counted() {
        let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let (Some(process), Some(in_tree)) = (super::this_process(), super::process_tree(me))
        else {
            return; // No /proc here.
        };
        let spun = Duration::from_millis(300);
        let (started, deadline) = (thread_cpu(), Instant::now() + Duration::from_secs(60));
        let mut spins = 0u64;
        while thread_cpu() - started < spun {
            assert!(Instant::now() < deadline, "300 ms of CPU not had in 60 s");
            spins = std::hint::black_box(spins + 1);
        }
        let at_least = spun - Duration::from_millis(30);
        let process = super::this_process()
            .unwrap_or_default()
            .saturating_sub(process);
        let in_tree = super::process_tree(me)
            .unwrap_or_default()
            .saturating_sub(in_tree);
        assert!(process >= at_least, "this process: {process:?}");
        assert!(in_tree >= at_least, "its tree: {in_tree:?}");
    }

    /// A thread spinning for 300 ms of its own CPU shows in the time of the threads of its
    /// name, while it lives; other threads' time does not.
    #[test]
    fn a_named_thread_is_counted_apart() {
        if super::threads(|_| true).is_none() {
            return; // No /proc here.
        }
        let (spun_tx, spun_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let spinner = std::thread::Builder::new()
            .name("cpu-test-spin".into())
            .spawn(move || {
                let (started, deadline) = (thread_cpu(), Instant::now() + Duration::from_secs(60));
                let mut spins = 0u64;
                while thread_cpu() - started < Duration::from_millis(300)
                    && Instant::now() < deadline
                {
                    spins = std::hint::black_box(spins + 1);
                }
                let _ = spun_tx.send(());
                let _ = done_rx.recv();
            })
            .expect("spawn");
        spun_rx.recv().expect("spun");
        let named = super::threads(|name| name == "cpu-test-spin").unwrap_or_default();
        let other = super::threads(|name| name == "no-such-thread").unwrap_or_default();
        let _ = done_tx.send(());
        let _ = spinner.join();
        assert!(
            named >= Duration::from_millis(270),
            "the named thread: {named:?}"
        );
        assert_eq!(other, Duration::ZERO);
    }

    /// A child that exited and was waited for still counts (its CPU moves to its parent's
    /// children's times): the reading never drops when a PostgreSQL backend's connection closes.
    #[test]
    fn an_exited_child_still_counts() {
        let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let (Some(tree), Some(own)) = (super::process_tree(me), super::this_process()) else {
            return; // No /proc here.
        };
        let Ok(status) = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
        else {
            return; // No sh here.
        };
        assert!(status.success());
        let grown = super::process_tree(me)
            .unwrap_or_default()
            .saturating_sub(tree);
        let own = super::this_process()
            .unwrap_or_default()
            .saturating_sub(own);
        assert!(
            grown.saturating_sub(own) >= Duration::from_millis(50),
            "the exited child's CPU in the tree: {:?}",
            grown.saturating_sub(own)
        );
    }

    /// A child in a process group of its own (PostgreSQL's backends are in sessions of their
    /// own) is counted in its parent's tree: a process group's sum would miss it.
    #[test]
    fn a_child_in_its_own_group_is_counted() {
        use std::os::unix::process::CommandExt;
        let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        if super::process_tree(me).is_none() {
            return; // No /proc here.
        }
        let Ok(mut child) = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .process_group(0)
            .spawn()
        else {
            return; // No sh here.
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let children = loop {
            // This process's own time is read last: it only grows, so the difference errs low.
            let tree = super::process_tree(me).unwrap_or_default();
            let children = tree.saturating_sub(super::this_process().unwrap_or_default());
            if children >= Duration::from_millis(100) || Instant::now() > deadline {
                break children;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            children >= Duration::from_millis(100),
            "the child's CPU in the tree after 60 s: {children:?}"
        );
    }
}
