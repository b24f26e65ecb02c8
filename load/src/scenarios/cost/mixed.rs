//! The read capacity with writes behind, judged by CPU: cached reads at a fixed rate while the
//! writer POSTs at `--cost-writes-behind`/s (the capacity search's mix), and what the machine's
//! cores would serve of such reads once the writes have taken their share, beside what they
//! serve of the trivial handler's requests.
//!
//! Why by CPU and not by a capacity search: on this machine goose spends about as much CPU per
//! request as a cached read costs the service side, and 3.6× the trivial handler's, so a search
//! measures the generator as much as the service, and the handler's ceiling mostly the
//! generator (issue 32). Here the generator is left out of both sides, and so is the SQS
//! emulator, whose work runs on AWS's machines in production. The writes' own cost (from the
//! write phase, to applied) is subtracted from the phase's, so what is left per read includes
//! what the writes make reads cost: the misses after each invalidation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::meter::{Part, UNIT, Used};
use super::platform::Platform;
use super::{SCENARIO, attack, requests};
use crate::kit::goose::Run;
use crate::kit::report::Figure;
use crate::kit::target::Target;
use crate::kit::writer::{WriteSummary, Writer, WriterConfig};

/// The phase's settings and where it runs.
pub struct Mixed<'a> {
    pub target: &'a Target,
    pub args: &'a super::CostArgs,
    pub seconds: usize,
    pub platform: &'a Platform<'a>,
    pub consolidation_db: &'a sqlx::PgPool,
}

/// The bound of issue 32: reads with writes behind reach this share of the trivial handler.
const GOAL: f64 = 0.3;

impl Mixed<'_> {
    /// Runs the phase; `handler` is the trivial handler's CPU per request and `write` a write's
    /// platform CPU (to applied, emulator and goose left out), both µs from this run.
    pub async fn run(
        &self,
        handler: f64,
        write: f64,
        figures: &mut Vec<Figure>,
    ) -> anyhow::Result<()> {
        let (rate, behind) = (self.args.cost_read_rate, self.args.cost_writes_behind);
        eprintln!("cost: cached reads at {rate}/s with writes at {behind}/s behind");
        let applied_before = requests::applied(self.consolidation_db).await?;
        let ((reads, writes), used): ((Run, WriteSummary), Used) = self
            .platform
            .metered(async {
                let writer = self.writer(behind)?;
                let reads = attack(
                    &self.target.consolidation_url,
                    rate,
                    self.seconds,
                    "cost-mixed",
                )
                .run(requests::cached_reads(self.target))
                .await;
                let writes = WriteSummary::of(&writer.stop().await);
                let accepted = i64::try_from(writes.writes - writes.failed)?;
                requests::wait_applied(self.consolidation_db, applied_before + accepted).await?;
                Ok((reads?, writes))
            })
            .await?;
        let accepted = (writes.writes - writes.failed) as f64;
        let platform_all = used.platform_micros(&Part::ALL);
        let per_read = (platform_all - accepted * write).max(0.0) / reads.requests.max(1) as f64;
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let left = (cores * 1e6 - behind as f64 * write).max(0.0);
        let capacity = left / per_read.max(f64::EPSILON);
        let trivial = cores * 1e6 / handler.max(f64::EPSILON);
        figures.extend([
            Figure::new(
                SCENARIO,
                &format!("reads with writes at {behind}/s behind: the platform per read"),
                per_read,
                UNIT,
            )
            .against("trivial axum handler's CPU per request", handler),
            Figure::new(
                SCENARIO,
                &format!(
                    "read capacity the platform's CPU allows, writes at {behind}/s behind \
                     ({cores} cores; goal {GOAL}x)"
                ),
                capacity,
                "req/s",
            )
            .against("the trivial handler's on the same cores", trivial)
            .bound(capacity >= GOAL * trivial),
        ]);
        if reads.failures + writes.failed > 0 {
            figures.push(Figure::new(
                SCENARIO,
                "reads with writes behind: failed requests",
                (reads.failures + writes.failed) as f64,
                "",
            ));
        }
        Ok(())
    }

    fn writer(&self, rate: usize) -> anyhow::Result<Writer> {
        Writer::start(
            WriterConfig {
                base_url: self.target.ledger_url.clone(),
                merchants: Arc::new(self.target.merchants.clone()),
                tokens: Arc::new(self.target.tokens.clone()),
                rate: rate as f64,
                description: "cost".into(),
                retry_deadline: Duration::from_secs(30),
            },
            Instant::now(),
        )
    }
}
