//! Who used the CPU over a measured phase: the SQS emulator, PostgreSQL, Redis (each read from
//! the harness backend's cgroup or `/proc`) and this process, in cores.

use std::time::{Duration, Instant};

use harness::Stack;
use harness::backend::Dependency;

use super::report::Figure;

/// CPU used over one measured phase, in cores (CPU-seconds per second of the phase); `None`
/// where the backend or the platform cannot tell.
#[derive(Debug, Default, Clone, Copy)]
pub struct Busy {
    /// The SQS emulator's container or process.
    pub emulator: Option<f64>,
    /// PostgreSQL's.
    pub postgres: Option<f64>,
    /// Redis's.
    pub redis: Option<f64>,
    /// This process: the load client, or the consolidation while it drains.
    pub this_process: Option<f64>,
}

impl Busy {
    /// Each part's CPU as a figure of `scenario`, "CPU during `phase`: part".
    pub fn figures(&self, scenario: &str, phase: &str, this_process: &str) -> Vec<Figure> {
        [
            ("emulator", self.emulator),
            ("PostgreSQL", self.postgres),
            ("Redis", self.redis),
            (this_process, self.this_process),
        ]
        .into_iter()
        .filter_map(|(part, cores)| {
            Some(Figure::new(
                scenario,
                &format!("CPU during {phase}: {part}"),
                cores? * 100.0,
                "% of a core",
            ))
        })
        .collect()
    }
}

/// CPU readings at the start of a phase.
pub struct CpuMeter {
    started: Instant,
    dependencies: [Option<Duration>; 3],
    this_process: Option<Duration>,
}

/// Read in this order at the start of a phase and in the reverse order at its end, so that the
/// emulator's window is the closest to the phase's (each reading is a call to the backend).
const METERED: [Dependency; 3] = [Dependency::Postgres, Dependency::Redis, Dependency::Sqs];

impl CpuMeter {
    /// Reads the CPU used so far by each part.
    pub async fn start(stack: &Stack) -> Self {
        let mut dependencies = [None; 3];
        for (reading, dependency) in dependencies.iter_mut().zip(METERED) {
            *reading = stack.backend().cpu_time(dependency).await.ok().flatten();
        }
        Self {
            started: Instant::now(),
            dependencies,
            this_process: harness::cpu::this_process(),
        }
    }

    /// The CPU each part used since [`CpuMeter::start`], in cores.
    pub async fn stop(self, stack: &Stack) -> Busy {
        let seconds = self.started.elapsed().as_secs_f64();
        let cores = |before: Option<Duration>, after: Option<Duration>| {
            Some((after?.saturating_sub(before?)).as_secs_f64() / seconds)
        };
        let mut used = [None; 3];
        for ((share, before), dependency) in
            used.iter_mut().zip(self.dependencies).zip(METERED).rev()
        {
            *share = cores(
                before,
                stack.backend().cpu_time(dependency).await.ok().flatten(),
            );
        }
        Busy {
            postgres: used[0],
            redis: used[1],
            emulator: used[2],
            this_process: cores(self.this_process, harness::cpu::this_process()),
        }
    }
}
