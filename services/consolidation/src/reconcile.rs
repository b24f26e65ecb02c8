//! The reconciler: proves the consolidation agrees with the ledger, the source of truth, and
//! repairs what it can.
//!
//! A pass over a range of business dates (and optionally one merchant):
//! 1. fetches the ledger's digest of every merchant-day (count, credit and debit sums, XOR
//!    checksum of entry ids) and reads its own from `daily_balances`;
//! 2. re-reads both, after a grace period, for the merchant-days that differ, so that events
//!    still on their way (consumer lag) are not mistaken for lost ones;
//! 3. asks the ledger to replay each merchant-day still behind. The ledger re-publishes the
//!    original event ids through its outbox; the consumer applies only the events it never
//!    recorded, so a replay is idempotent and never blocks or bypasses the consumer;
//! 4. re-checks until each replayed merchant-day agrees, or a deadline;
//! 5. reports, and updates the metrics.
//!
//! A merchant-day where the consolidation holds *more* than the ledger (count or a sum) cannot be
//! repaired by a replay and is never "repaired" by subtracting: it is flagged (`ahead`).
//!
//! Only one pass runs at a time across replicas: a pass holds a PostgreSQL session advisory lock
//! on a connection detached from the pool, so the lock dies with the connection whatever happens
//! to the pass (panic, abort at shutdown). Calls to the ledger retry with exponential backoff
//! (`backon`) while it is unavailable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use cashflow_contracts::digest::{DayDigest, format_checksum, parse_checksum};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgPool};
use time::Date;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ReconcileConfig;
use crate::ledger_client::{LedgerClient, LedgerError};
use crate::metrics::ReconcileMetrics;

/// Key of the advisory lock one reconcile pass holds ("reconcil" in ASCII).
pub const LOCK_KEY: i64 = 0x7265_636f_6e63_696c;

/// A merchant-day's totals on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Totals {
    count: i64,
    credits: i64,
    debits: i64,
    /// `None`: unknown (consolidation rows from before checksums were kept).
    checksum: Option<i64>,
}

impl Totals {
    fn agrees_with(&self, ledger: &Totals) -> bool {
        self.count == ledger.count
            && self.credits == ledger.credits
            && self.debits == ledger.debits
            && self.checksum.is_none_or(|c| Some(c) == ledger.checksum)
    }

    /// Holds more than the ledger: not repairable by replay.
    fn ahead_of(&self, ledger: &Totals) -> bool {
        self.count > ledger.count || self.credits > ledger.credits || self.debits > ledger.debits
    }
}

/// A merchant-day's totals as the report shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DayTotals {
    /// Entries.
    pub entry_count: i64,
    /// Sum of credits in minor units.
    pub credits_minor: i64,
    /// Sum of debits in minor units.
    pub debits_minor: i64,
    /// Checksum of the entry ids (16 hex digits); null when unknown.
    pub checksum: Option<String>,
}

impl From<Totals> for DayTotals {
    fn from(t: Totals) -> Self {
        Self {
            entry_count: t.count,
            credits_minor: t.credits,
            debits_minor: t.debits,
            checksum: t.checksum.map(format_checksum),
        }
    }
}

/// One merchant-day where the two sides differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Divergence {
    /// Whose books.
    pub merchant_id: String,
    /// `YYYY-MM-DD`.
    pub business_date: String,
    /// What the ledger holds.
    pub ledger: DayTotals,
    /// What the consolidation holds.
    pub consolidation: DayTotals,
}

/// What a pass found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReconcileReport {
    /// First business date covered.
    pub from: String,
    /// Last business date covered.
    pub to: String,
    /// The merchant, when the pass covered one.
    pub merchant_id: Option<String>,
    /// Merchant-days compared (with entries on either side).
    pub compared: usize,
    /// Merchant-days behind the ledger (after the grace period), replayed.
    pub divergent: Vec<Divergence>,
    /// How many of them agreed with the ledger after the replay.
    pub repaired: usize,
    /// Those that still differ after the re-check deadline.
    pub still_divergent: Vec<Divergence>,
    /// Merchant-days where the consolidation holds more than the ledger: flagged, not touched.
    pub ahead: Vec<Divergence>,
    /// Events the ledger re-published.
    pub replayed_events: u64,
    /// Wall time of the pass.
    pub duration_ms: u64,
}

/// Why a pass did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Another replica (or request) is reconciling.
    #[error("another reconcile pass is running")]
    Busy,
    /// The ledger could not be reached, or refused.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The consolidation's database failed.
    #[error("the consolidation's database failed: {0}")]
    Database(#[from] sqlx::Error),
}

type Key = (String, Date);

/// Runs passes: periodically, and on demand.
#[derive(Debug)]
pub struct Reconciler {
    pool: PgPool,
    ledger: LedgerClient,
    config: ReconcileConfig,
    metrics: ReconcileMetrics,
    /// When each merchant-day still divergent was first found (this replica's view), for the
    /// age of the oldest unrepaired divergence.
    open: Mutex<HashMap<Key, Instant>>,
}

impl Reconciler {
    /// A reconciler for `config` on `pool`.
    pub fn new(
        pool: PgPool,
        config: ReconcileConfig,
        metrics: ReconcileMetrics,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            ledger: LedgerClient::new(&config)?,
            pool,
            config,
            metrics,
            open: Mutex::default(),
        })
    }

    /// The range a periodic pass covers: `window_days` before today (UTC) up to tomorrow, so
    /// that merchants in any time zone have their "today" included.
    pub fn window(&self) -> (Date, Date) {
        let today = time::OffsetDateTime::now_utc().date();
        (
            today - time::Duration::days(i64::from(self.config.window_days)),
            today.next_day().unwrap_or(today),
        )
    }

    /// The widest range a pass may cover (days), which is also the widest replay.
    pub fn window_days(&self) -> u16 {
        self.config.window_days
    }

    /// Passes every `interval` until `shutdown`. Each pass runs in a task of its own: a failed
    /// pass is logged and the next one comes at the next tick; a panic is logged as an error
    /// (never silent) and counted as a failure.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: a replica that starts after an outage checks at once.
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => break,
            }
            let me = Arc::clone(&self);
            let (from, to) = self.window();
            let mut pass = tokio::spawn(async move { me.reconcile(from, to, None).await });
            tokio::select! {
                joined = &mut pass => match joined {
                    Ok(Ok(report)) => log_report(&report),
                    Ok(Err(ReconcileError::Busy)) => {
                        tracing::debug!("another replica is reconciling; skipping this pass");
                    }
                    Ok(Err(e)) => {
                        self.metrics.failures.inc();
                        tracing::warn!(error = %e, "reconcile pass failed; next at the next interval");
                    }
                    Err(e) => {
                        self.metrics.failures.inc();
                        tracing::error!(error = %e, "reconcile pass panicked; next at the next interval");
                    }
                },
                () = shutdown.cancelled() => {
                    pass.abort();
                    break;
                }
            }
        }
        tracing::info!("reconciler stopped");
    }

    /// One pass over `from..=to` (one merchant, or all).
    pub async fn reconcile(
        &self,
        from: Date,
        to: Date,
        merchant: Option<&str>,
    ) -> Result<ReconcileReport, ReconcileError> {
        let started = Instant::now();
        // Detached: the lock lives and dies with this connection, never returned to the pool.
        let mut lock = self.pool.acquire().await?.detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut lock)
            .await?;
        if !locked {
            let _ = lock.close().await;
            return Err(ReconcileError::Busy);
        }
        let outcome = self.pass(from, to, merchant).await;
        // Closing the session releases the lock.
        let _ = lock.close().await;
        let mut report = outcome?;
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.metrics.passes.inc();
        Ok(report)
    }

    async fn pass(
        &self,
        from: Date,
        to: Date,
        merchant: Option<&str>,
    ) -> Result<ReconcileReport, ReconcileError> {
        let ledger = self.ledger_digests(from, to, merchant).await?;
        let own = self.own_digests(from, to, merchant).await?;
        let keys: BTreeSet<Key> = ledger.keys().chain(own.keys()).cloned().collect();
        let compared = keys.len();
        let differing: Vec<Key> = keys
            .into_iter()
            .filter(|k| {
                !own.get(k)
                    .copied()
                    .unwrap_or_default()
                    .agrees_with(&ledger.get(k).copied().unwrap_or_default())
            })
            .collect();

        let mut divergent = Vec::new();
        let mut ahead = Vec::new();
        if !differing.is_empty() {
            // Consumer lag looks like a divergence: look again after the grace period.
            tokio::time::sleep(self.config.grace).await;
            let (ledger_now, own_now) = self.reread(&differing).await?;
            for key in differing {
                let first = ledger.get(&key).copied().unwrap_or_default();
                let theirs = ledger_now.get(&key).copied().unwrap_or_default();
                let ours = own_now.get(&key).copied().unwrap_or_default();
                if ours.agrees_with(&theirs) {
                    continue;
                }
                if ours.ahead_of(&theirs) {
                    ahead.push((key, theirs, ours));
                } else if ours.count < first.count || ours.count == theirs.count {
                    // Still missing what the ledger had before the grace period (or the same
                    // count with other sums or ids): lost, not late.
                    divergent.push((key, theirs, ours));
                }
            }
        }

        // Counted as soon as known, before the replays: the metrics show a divergence while it
        // is being repaired.
        self.metrics.found.inc_by(divergent.len() as u64);
        let mut replayed_events = 0;
        for ((merchant, day), _, _) in &divergent {
            let outcome = (|| async { self.ledger.replay(merchant, *day, *day).await })
                .retry(self.backoff())
                .when(LedgerError::is_transient)
                .await?;
            replayed_events += outcome.replayed;
        }

        let mut still = Vec::new();
        if !divergent.is_empty() {
            let keys: Vec<Key> = divergent.iter().map(|(k, _, _)| k.clone()).collect();
            still = self.recheck(&keys).await?;
        }
        let repaired = divergent.len() - still.len();

        self.metrics.repaired.inc_by(repaired as u64);
        self.metrics.still_divergent.inc_by(still.len() as u64);
        self.metrics
            .ahead
            .set(i64::try_from(ahead.len()).unwrap_or(i64::MAX));
        self.track_open(from, to, merchant, &still, &ahead);

        let describe = |(key, theirs, ours): &(Key, Totals, Totals)| Divergence {
            merchant_id: key.0.clone(),
            business_date: cashflow_contracts::business_date::format(key.1),
            ledger: (*theirs).into(),
            consolidation: (*ours).into(),
        };
        let still: Vec<Divergence> = still.iter().map(describe).collect();
        Ok(ReconcileReport {
            from: cashflow_contracts::business_date::format(from),
            to: cashflow_contracts::business_date::format(to),
            merchant_id: merchant.map(str::to_string),
            compared,
            divergent: divergent.iter().map(describe).collect(),
            repaired,
            still_divergent: still,
            ahead: ahead.iter().map(describe).collect(),
            replayed_events,
            duration_ms: 0,
        })
    }

    /// Waits until every merchant-day of `keys` agrees with the ledger, or the deadline; returns
    /// those that still differ.
    async fn recheck(&self, keys: &[Key]) -> Result<Vec<(Key, Totals, Totals)>, ReconcileError> {
        let deadline = Instant::now() + self.config.recheck_timeout;
        loop {
            let (ledger, own) = self.reread(keys).await?;
            let still: Vec<(Key, Totals, Totals)> = keys
                .iter()
                .filter_map(|k| {
                    let theirs = ledger.get(k).copied().unwrap_or_default();
                    let ours = own.get(k).copied().unwrap_or_default();
                    (!ours.agrees_with(&theirs)).then(|| (k.clone(), theirs, ours))
                })
                .collect();
            if still.is_empty() || Instant::now() >= deadline {
                return Ok(still);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Both sides again, for `keys` only: one digest call per merchant, over its days' span.
    async fn reread(
        &self,
        keys: &[Key],
    ) -> Result<(BTreeMap<Key, Totals>, BTreeMap<Key, Totals>), ReconcileError> {
        let mut spans: BTreeMap<&str, (Date, Date)> = BTreeMap::new();
        for (merchant, day) in keys {
            let span = spans.entry(merchant.as_str()).or_insert((*day, *day));
            span.0 = span.0.min(*day);
            span.1 = span.1.max(*day);
        }
        let mut ledger = BTreeMap::new();
        let mut own = BTreeMap::new();
        for (merchant, (from, to)) in spans {
            ledger.extend(self.ledger_digests(from, to, Some(merchant)).await?);
            own.extend(self.own_digests(from, to, Some(merchant)).await?);
        }
        Ok((ledger, own))
    }

    fn backoff(&self) -> ExponentialBuilder {
        cashflow_platform::backoff::Backoff::new(
            self.config.retry_min_delay,
            self.config.retry_max_delay,
        )
        .retrying(self.config.retry_times)
    }

    async fn ledger_digests(
        &self,
        from: Date,
        to: Date,
        merchant: Option<&str>,
    ) -> Result<BTreeMap<Key, Totals>, ReconcileError> {
        let digests: Vec<DayDigest> = (|| async { self.ledger.digests(from, to, merchant).await })
            .retry(self.backoff())
            .when(LedgerError::is_transient)
            .notify(|e, after| {
                tracing::warn!(error = %e, retry_in = ?after, "the ledger is unavailable; backing off");
            })
            .await?;
        let mut map = BTreeMap::new();
        for d in digests {
            let day = cashflow_contracts::business_date::parse(&d.business_date)
                .map_err(|e| LedgerError::Refused(format!("digest date: {e}")))?;
            map.insert(
                (d.merchant_id, day),
                Totals {
                    count: d.entry_count,
                    credits: d.credits_minor,
                    debits: d.debits_minor,
                    checksum: parse_checksum(&d.checksum),
                },
            );
        }
        Ok(map)
    }

    async fn own_digests(
        &self,
        from: Date,
        to: Date,
        merchant: Option<&str>,
    ) -> Result<BTreeMap<Key, Totals>, ReconcileError> {
        let rows: Vec<(String, Date, i64, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT merchant_id, business_date, entry_count, credits_minor, debits_minor, \
                    entry_checksum \
             FROM daily_balances WHERE business_date BETWEEN $1 AND $2 \
               AND ($3::text IS NULL OR merchant_id = $3)",
        )
        .bind(from)
        .bind(to)
        .bind(merchant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(m, d, count, credits, debits, checksum)| {
                (
                    (m, d),
                    Totals {
                        count,
                        credits,
                        debits,
                        checksum,
                    },
                )
            })
            .collect())
    }

    /// Keeps the map of open divergences (this pass's range only) and the gauges.
    fn track_open(
        &self,
        from: Date,
        to: Date,
        merchant: Option<&str>,
        still: &[(Key, Totals, Totals)],
        ahead: &[(Key, Totals, Totals)],
    ) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        let now = Instant::now();
        let unresolved: BTreeSet<&Key> = still.iter().chain(ahead).map(|(k, _, _)| k).collect();
        // Merchant-days this pass covered and found in agreement are resolved; the others keep
        // the time they were first seen.
        open.retain(|key, _| {
            let (m, d) = key;
            let covered = *d >= from && *d <= to && merchant.is_none_or(|x| x == m);
            !covered || unresolved.contains(key)
        });
        for key in unresolved {
            open.entry(key.clone()).or_insert(now);
        }
        let oldest = open
            .values()
            .min()
            .map_or(0.0, |at| now.duration_since(*at).as_secs_f64());
        self.metrics
            .unrepaired
            .set(i64::try_from(open.len()).unwrap_or(i64::MAX));
        self.metrics.oldest_divergence_age_seconds.set(oldest);
    }
}

fn log_report(report: &ReconcileReport) {
    if report.divergent.is_empty() && report.ahead.is_empty() {
        tracing::debug!(
            compared = report.compared,
            "reconciled: consolidation agrees with the ledger"
        );
    } else {
        tracing::warn!(
            compared = report.compared,
            divergent = report.divergent.len(),
            repaired = report.repaired,
            still_divergent = report.still_divergent.len(),
            ahead = report.ahead.len(),
            replayed_events = report.replayed_events,
            "reconciled: divergences found"
        );
    }
}
