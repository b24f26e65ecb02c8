//! The clients' history, checked (Jepsen style, docs/adr/0021-clients-history-checked.md): chaos
//! scenarios record every client operation (who, when it started and ended, what it asked, what
//! it was answered) and, once the load stops, check what each client saw along the way, not only
//! the final totals:
//!
//! - **monotonic reads per client:** a client never sees a day's `entry_count`, credits or
//!   debits go down on an answer that is not marked stale (`Cache-Status`), compared with what
//!   the same client had seen fresh on a read that ended before this one started;
//! - **read validity:** every balance read lies between what was acknowledged before the read
//!   started and what had been sent before it ended. The balances are consolidated
//!   asynchronously (outbox, SQS, consumer), so an acknowledged entry reaches them a moment
//!   later: the lower bound counts what was acknowledged `lag_allowance` before the read started
//!   (a stale answer has no lower bound, it says it is old), and the checker reports the largest
//!   lag a read showed. The upper bound is exact: nothing counted that was not sent, nothing
//!   counted twice;
//! - **every acknowledged entry is listed by the ledger.**
//!
//! The recorder is cheap to share (`Arc<History>`) between the load's tasks; the checker is
//! plain arithmetic over the recorded operations, with unit tests of its own.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::books::{DayTotals, minor_units};
use serde_json::Value;

/// A merchant's day: what a balance read reads and an entry changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    /// The merchant.
    pub merchant: String,
    /// The business date, `YYYY-MM-DD`.
    pub date: String,
}

impl Day {
    /// A merchant's day.
    pub fn new(merchant: impl Into<String>, date: impl Into<String>) -> Self {
        Self {
            merchant: merchant.into(),
            date: date.into(),
        }
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.merchant, self.date)
    }
}

/// What a day's balance counts only grows as entries are recorded, so each field is checked on
/// its own.
impl DayTotals {
    /// One entry: a credit or a debit of `amount` minor units.
    pub fn entry(credit: bool, amount: i64) -> Self {
        Self {
            entry_count: 1,
            credits_minor: if credit { amount } else { 0 },
            debits_minor: if credit { 0 } else { amount },
        }
    }

    /// The totals of a balance answer (`GET .../balances/{date}`): `entry_count`, `credits`,
    /// `debits`; `None` when the answer lacks one.
    pub fn of_balance(answer: &Value) -> Option<Self> {
        let minor = |field: &str| minor_units(&answer[field]).ok();
        Some(Self {
            entry_count: answer["entry_count"].as_i64()?,
            credits_minor: minor("credits")?,
            debits_minor: minor("debits")?,
        })
    }

    fn add(&mut self, other: Self) {
        self.entry_count += other.entry_count;
        self.credits_minor += other.credits_minor;
        self.debits_minor += other.debits_minor;
    }

    /// Whether any field of `self` is below the same field of `other`.
    fn any_below(self, other: Self) -> bool {
        self.entry_count < other.entry_count
            || self.credits_minor < other.credits_minor
            || self.debits_minor < other.debits_minor
    }

    /// The field-wise maximum.
    fn max(self, other: Self) -> Self {
        Self {
            entry_count: self.entry_count.max(other.entry_count),
            credits_minor: self.credits_minor.max(other.credits_minor),
            debits_minor: self.debits_minor.max(other.debits_minor),
        }
    }
}

impl std::fmt::Display for DayTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries, credits {}, debits {}",
            self.entry_count, self.credits_minor, self.debits_minor
        )
    }
}

/// One entry recorded by a client: from its first attempt to its last answer (retries of the
/// same Idempotency-Key included).
#[derive(Debug, Clone)]
pub struct Write {
    /// Which client.
    pub client: usize,
    /// The merchant's day it adds to.
    pub day: Day,
    /// What it adds.
    pub totals: DayTotals,
    /// When the first attempt was sent.
    pub start: Instant,
    /// When the last answer came.
    pub end: Instant,
    /// The entry's id when the ledger acknowledged it (201), else `None`.
    pub acknowledged: Option<String>,
}

/// One balance read by a client: from its first attempt to its last answer.
#[derive(Debug, Clone)]
pub struct Read {
    /// Which client.
    pub client: usize,
    /// The merchant's day read.
    pub day: Day,
    /// When the first attempt was sent.
    pub start: Instant,
    /// When the last answer came.
    pub end: Instant,
    /// The last answer's status; `None` when none came.
    pub status: Option<u16>,
    /// What the answer counted, on a 200.
    pub totals: Option<DayTotals>,
    /// Whether the answer was marked stale (`Cache-Status: ...; detail=stale-if-error`).
    pub stale: bool,
}

/// Whether a response's `Cache-Status` marks it stale (served from a retired copy).
pub fn marked_stale(cache_status: Option<&str>) -> bool {
    cache_status.is_some_and(|value| value.contains("stale"))
}

/// Every operation the clients made, in the order they ended.
#[derive(Debug, Default)]
pub struct History {
    /// What each day counted before the history began (entries recorded before it).
    baseline: Mutex<BTreeMap<Day, DayTotals>>,
    writes: Mutex<Vec<Write>>,
    reads: Mutex<Vec<Read>>,
}

impl History {
    /// Sets what `day` counted before the first recorded operation (a seed, say): it is both
    /// sent and acknowledged from the start.
    pub fn baseline(&self, day: Day, totals: DayTotals) {
        self.baseline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(day, totals);
    }

    /// Records a finished write.
    pub fn write(&self, write: Write) {
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(write);
    }

    /// Records a finished read.
    pub fn read(&self, read: Read) {
        self.reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(read);
    }

    /// The writes so far.
    pub fn writes(&self) -> Vec<Write> {
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The reads so far.
    pub fn reads(&self) -> Vec<Read> {
        self.reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The days with at least one acknowledged entry: those whose listing the ledger is asked
    /// for ([`History::check`]'s `listed`).
    pub fn acknowledged_days(&self) -> Vec<Day> {
        let mut days: Vec<Day> = self
            .writes()
            .into_iter()
            .filter(|w| w.acknowledged.is_some())
            .map(|w| w.day)
            .collect();
        days.sort();
        days.dedup();
        days
    }

    /// Checks the history. `listed` is every entry id the ledger lists for the
    /// [`acknowledged_days`](History::acknowledged_days); `lag_allowance` is how long after its
    /// acknowledgement an entry may still be missing from a fresh balance.
    pub fn check(&self, listed: &HashSet<String>, lag_allowance: Duration) -> Verdict {
        let baseline = self
            .baseline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        check_from(
            &baseline,
            &self.writes(),
            &self.reads(),
            listed,
            lag_allowance,
        )
    }
}

/// Examples of violations kept for the report, at most this many.
const EXAMPLES: usize = 10;

/// What the checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Reads made.
    pub reads: u64,
    /// Reads whose last answer was not a 200 with a balance.
    pub reads_failed: u64,
    /// Reads answered 200 with a balance: the ones checked.
    pub reads_checked: u64,
    /// Of those, answers marked stale.
    pub reads_stale: u64,
    /// Fresh answers lower than what the same client had seen fresh before.
    pub regressions: u64,
    /// Answers outside their validity window.
    pub invalid: u64,
    /// Entries the ledger acknowledged.
    pub acknowledged: u64,
    /// Of those, entries the ledger does not list.
    pub missing: u64,
    /// The largest lag a fresh read showed: how long before the read started the oldest
    /// acknowledged entry it did not count yet had been acknowledged.
    pub max_lag: Duration,
    /// Some of the violations, described.
    pub examples: Vec<String>,
}

impl Verdict {
    /// Whether every check held and every read was answered 200.
    pub fn holds(&self) -> bool {
        self.reads_failed == 0 && self.regressions == 0 && self.invalid == 0 && self.missing == 0
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(text);
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reads checked ({} stale, {} not 200), {} regressions on fresh answers, {} reads \
             outside their validity window (largest lag {} ms), {} of {} acknowledged entries \
             missing",
            self.reads_checked,
            self.reads_stale,
            self.reads_failed,
            self.regressions,
            self.invalid,
            self.max_lag.as_millis(),
            self.missing,
            self.acknowledged
        )?;
        for example in &self.examples {
            write!(f, "\n  {example}")?;
        }
        Ok(())
    }
}

/// One day's writes as prefix sums over time: what had been sent, and what acknowledged, by
/// any instant.
#[derive(Debug, Default)]
struct Timeline {
    /// What the day counted before the history began.
    base: DayTotals,
    /// (first attempt, totals sent up to and including it), by time.
    sent: Vec<(Instant, DayTotals)>,
    /// (acknowledgement, totals acknowledged up to and including it), by time.
    acknowledged: Vec<(Instant, DayTotals)>,
}

impl Timeline {
    fn of(base: DayTotals, writes: &[&Write]) -> Self {
        let prefix = |mut points: Vec<(Instant, DayTotals)>| {
            points.sort_by_key(|(at, _)| *at);
            let mut sum = DayTotals::default();
            points
                .into_iter()
                .map(|(at, totals)| {
                    sum.add(totals);
                    (at, sum)
                })
                .collect()
        };
        Self {
            base,
            sent: prefix(writes.iter().map(|w| (w.start, w.totals)).collect()),
            acknowledged: prefix(
                writes
                    .iter()
                    .filter(|w| w.acknowledged.is_some())
                    .map(|w| (w.end, w.totals))
                    .collect(),
            ),
        }
    }

    /// The base plus the points strictly before `at`.
    fn before(&self, points: &[(Instant, DayTotals)], at: Instant) -> DayTotals {
        let n = points.partition_point(|(t, _)| *t < at);
        let mut sum = self.base;
        if let Some(i) = n.checked_sub(1) {
            sum.add(points[i].1);
        }
        sum
    }

    /// How long before `at` the oldest acknowledged entry not counted in `entry_count` was
    /// acknowledged (zero when every one acknowledged before `at` is counted).
    fn lag(&self, at: Instant, entry_count: i64) -> Duration {
        let acknowledged = self.acknowledged.partition_point(|(t, _)| *t < at);
        usize::try_from(entry_count - self.base.entry_count)
            .ok()
            .filter(|&counted| counted < acknowledged)
            .map_or(Duration::ZERO, |first_missing| {
                at.saturating_duration_since(self.acknowledged[first_missing].0)
            })
    }
}

/// The checks over recorded writes and reads (see the module doc), every day starting empty.
pub fn check(
    writes: &[Write],
    reads: &[Read],
    listed: &HashSet<String>,
    lag_allowance: Duration,
) -> Verdict {
    check_from(&BTreeMap::new(), writes, reads, listed, lag_allowance)
}

/// The same, each day starting from what `baseline` says it counted.
pub fn check_from(
    baseline: &BTreeMap<Day, DayTotals>,
    writes: &[Write],
    reads: &[Read],
    listed: &HashSet<String>,
    lag_allowance: Duration,
) -> Verdict {
    let mut verdict = Verdict::default();

    let mut by_day: BTreeMap<&Day, Vec<&Write>> = BTreeMap::new();
    for write in writes {
        by_day.entry(&write.day).or_default().push(write);
        if let Some(id) = &write.acknowledged {
            verdict.acknowledged += 1;
            if !listed.contains(id) {
                verdict.missing += 1;
                verdict.example(format!(
                    "entry {id} ({}) acknowledged to client {} but not listed by the ledger",
                    write.day, write.client
                ));
            }
        }
    }
    for day in baseline.keys() {
        by_day.entry(day).or_default();
    }
    let timelines: BTreeMap<&Day, Timeline> = by_day
        .into_iter()
        .map(|(day, writes)| {
            let base = baseline.get(day).copied().unwrap_or_default();
            (day, Timeline::of(base, &writes))
        })
        .collect();
    let empty = Timeline::default();

    // Read validity, each answered read on its own.
    let mut answered: BTreeMap<(usize, &Day), Vec<(&Read, DayTotals)>> = BTreeMap::new();
    for read in reads {
        verdict.reads += 1;
        let (Some(200), Some(totals)) = (read.status, read.totals) else {
            verdict.reads_failed += 1;
            verdict.example(format!(
                "client {} read {}: answered {:?} with no balance it could read",
                read.client, read.day, read.status
            ));
            continue;
        };
        verdict.reads_checked += 1;
        let timeline = timelines.get(&read.day).unwrap_or(&empty);
        let sent = timeline.before(&timeline.sent, read.end);
        if totals.any_below(DayTotals::default()) || sent.any_below(totals) {
            verdict.invalid += 1;
            verdict.example(format!(
                "client {} read {}: {totals}, more than the {sent} sent before the read ended",
                read.client, read.day
            ));
        }
        if read.stale {
            verdict.reads_stale += 1;
            continue;
        }
        let since = read.start.checked_sub(lag_allowance).unwrap_or(read.start);
        let acknowledged = timeline.before(&timeline.acknowledged, since);
        if totals.any_below(acknowledged) {
            verdict.invalid += 1;
            verdict.example(format!(
                "client {} read {}: {totals}, less than the {acknowledged} acknowledged {} ms \
                 before the read started",
                read.client,
                read.day,
                lag_allowance.as_millis()
            ));
        }
        verdict.max_lag = verdict
            .max_lag
            .max(timeline.lag(read.start, totals.entry_count));
        answered
            .entry((read.client, &read.day))
            .or_default()
            .push((read, totals));
    }

    // Monotonic reads: each client's fresh answers for a day, against the most it had seen
    // fresh on reads that ended before this one started.
    for ((client, day), mut seen) in answered {
        seen.sort_by_key(|(read, _)| read.start);
        let mut by_end: Vec<(Instant, DayTotals)> =
            seen.iter().map(|(read, t)| (read.end, *t)).collect();
        by_end.sort_by_key(|(end, _)| *end);
        let (mut before, mut highest) = (0, None::<DayTotals>);
        for (read, totals) in &seen {
            while before < by_end.len() && by_end[before].0 < read.start {
                highest = Some(highest.map_or(by_end[before].1, |h| h.max(by_end[before].1)));
                before += 1;
            }
            if let Some(highest) = highest.filter(|h| totals.any_below(*h)) {
                verdict.regressions += 1;
                verdict.example(format!(
                    "client {client} read {day}: {totals} on a fresh answer, after it had seen \
                     {highest}"
                ));
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock for hand-written histories: `at(ms)`.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn day() -> Day {
        Day::new("m1", "2026-12-07")
    }

    fn credit(clock: &Clock, client: usize, id: &str, start: u64, end: u64) -> Write {
        Write {
            client,
            day: day(),
            totals: DayTotals::entry(true, 100),
            start: clock.at(start),
            end: clock.at(end),
            acknowledged: Some(id.to_string()),
        }
    }

    fn read(clock: &Clock, client: usize, start: u64, end: u64, count: i64) -> Read {
        Read {
            client,
            day: day(),
            start: clock.at(start),
            end: clock.at(end),
            status: Some(200),
            totals: Some(DayTotals {
                entry_count: count,
                credits_minor: 100 * count,
                debits_minor: 0,
            }),
            stale: false,
        }
    }

    fn listed(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|id| (*id).to_string()).collect()
    }

    /// Three credits, read as they arrive by two clients.
    /// The check with every credit of [`clean`] listed and a one-second lag allowed.
    fn check_clean(writes: &[Write], reads: &[Read]) -> Verdict {
        check(
            writes,
            reads,
            &listed(&["a", "b", "c"]),
            Duration::from_secs(1),
        )
    }

    fn clean() -> (Clock, Vec<Write>, Vec<Read>) {
        let clock = Clock(Instant::now());
        let writes = vec![
            credit(&clock, 0, "a", 0, 10),
            credit(&clock, 0, "b", 100, 110),
            credit(&clock, 0, "c", 200, 210),
        ];
        let reads = vec![
            read(&clock, 1, 20, 30, 1),
            read(&clock, 1, 120, 130, 2),
            read(&clock, 2, 150, 160, 1),
            read(&clock, 1, 300, 310, 3),
        ];
        (clock, writes, reads)
    }

    #[test]
    fn a_clean_history_holds() {
        let (_, writes, reads) = clean();
        let verdict = check_clean(&writes, &reads);
        assert!(verdict.holds(), "{verdict}");
        assert_eq!(verdict.reads_checked, 4);
        assert_eq!(verdict.acknowledged, 3);
        // Client 2 saw 1 entry at 150 ms, 40 ms after the second was acknowledged.
        assert_eq!(verdict.max_lag, Duration::from_millis(40));
    }

    #[test]
    fn a_fresh_answer_lower_than_the_client_saw_before_fails_the_monotonic_check() {
        let (clock, writes, mut reads) = clean();
        // Client 1 had seen 3 entries; a later fresh answer says 2.
        reads.push(read(&clock, 1, 400, 410, 2));
        let verdict = check_clean(&writes, &reads);
        assert_eq!(verdict.regressions, 1, "{verdict}");
        assert!(!verdict.holds());
        assert!(verdict.examples[0].contains("after it had seen 3 entries"));
    }

    #[test]
    fn a_lower_answer_marked_stale_is_no_regression() {
        let (clock, writes, mut reads) = clean();
        let mut stale = read(&clock, 1, 400, 410, 2);
        stale.stale = true;
        reads.push(stale);
        let verdict = check_clean(&writes, &reads);
        assert!(verdict.holds(), "{verdict}");
        assert_eq!(verdict.reads_stale, 1);
    }

    #[test]
    fn another_client_may_see_less_than_one_already_saw() {
        let (clock, writes, mut reads) = clean();
        // Client 2 has never seen 3: its 2 is no regression (monotonic reads are per client).
        reads.push(read(&clock, 2, 400, 410, 2));
        let verdict = check_clean(&writes, &reads);
        assert_eq!(verdict.regressions, 0, "{verdict}");
    }

    #[test]
    fn overlapping_reads_of_one_client_are_not_ordered() {
        let (clock, writes, mut reads) = clean();
        // Started before the read that saw 3 ended: no order between them.
        reads.push(read(&clock, 1, 305, 320, 2));
        let verdict = check_clean(&writes, &reads);
        assert_eq!(verdict.regressions, 0, "{verdict}");
    }

    #[test]
    fn an_answer_counting_more_than_was_sent_is_invalid() {
        let (clock, writes, mut reads) = clean();
        // Four entries counted, three ever sent: one counted twice.
        reads.push(read(&clock, 3, 400, 410, 4));
        let verdict = check_clean(&writes, &reads);
        assert_eq!(verdict.invalid, 1, "{verdict}");
        assert!(!verdict.holds());
    }

    #[test]
    fn an_answer_counting_an_entry_sent_after_it_ended_is_invalid() {
        let (clock, writes, mut reads) = clean();
        // Ended at 190: the third credit was first sent at 200.
        reads.push(read(&clock, 3, 180, 190, 3));
        let verdict = check_clean(&writes, &reads);
        assert_eq!(verdict.invalid, 1, "{verdict}");
    }

    #[test]
    fn a_stale_answer_still_has_its_upper_bound() {
        let (clock, writes, mut reads) = clean();
        let mut stale = read(&clock, 3, 400, 410, 4);
        stale.stale = true;
        reads.push(stale);
        let verdict = check_clean(&writes, &reads);
        assert_eq!(verdict.invalid, 1, "{verdict}");
    }

    #[test]
    fn an_answer_missing_entries_acknowledged_longer_ago_than_the_allowance_is_invalid() {
        let (clock, writes, mut reads) = clean();
        // At 1,000 ms every credit was acknowledged 790 ms or more before; one is still missing.
        reads.push(read(&clock, 3, 1_000, 1_010, 2));
        let lenient = check_clean(&writes, &reads);
        assert_eq!(lenient.invalid, 0, "{lenient}");
        assert_eq!(lenient.max_lag, Duration::from_millis(790));
        let strict = check(
            &writes,
            &reads,
            &listed(&["a", "b", "c"]),
            Duration::from_millis(500),
        );
        assert_eq!(strict.invalid, 1, "{strict}");
        assert!(strict.examples[0].contains("less than the 3 entries"));
    }

    #[test]
    fn an_acknowledged_entry_the_ledger_does_not_list_is_missing() {
        let (_, writes, reads) = clean();
        let verdict = check(
            &writes,
            &reads,
            &listed(&["a", "c"]),
            Duration::from_secs(1),
        );
        assert_eq!(verdict.missing, 1, "{verdict}");
        assert!(!verdict.holds());
        assert!(verdict.examples[0].contains("entry b"));
    }

    #[test]
    fn what_a_day_counted_before_the_history_began_is_its_baseline() {
        let (clock, writes, mut reads) = clean();
        // A seeded entry: the last read (3 credits) now counts 4 entries.
        for read in &mut reads {
            if let Some(totals) = read.totals.as_mut() {
                totals.entry_count += 1;
                totals.debits_minor += 1_000;
            }
        }
        let seeded = DayTotals::entry(false, 1_000);
        let baseline = BTreeMap::from([(day(), seeded)]);
        let ids = listed(&["a", "b", "c"]);
        let verdict = check_from(&baseline, &writes, &reads, &ids, Duration::from_secs(1));
        assert!(verdict.holds(), "{verdict}");
        assert_eq!(verdict.max_lag, Duration::from_millis(40));
        let without = check(&writes, &reads, &ids, Duration::from_secs(1));
        assert!(without.invalid > 0, "{without}");
        // A read that lost the seeded entry is below its window.
        reads.push(read(&clock, 3, 1_000, 1_010, 3));
        let lost = check_from(&baseline, &writes, &reads, &ids, Duration::from_secs(1));
        assert_eq!(lost.invalid, 1, "{lost}");
    }

    #[test]
    fn a_read_that_never_got_a_200_fails_the_history() {
        let (clock, writes, mut reads) = clean();
        let mut failed = read(&clock, 3, 400, 410, 0);
        (failed.status, failed.totals) = (Some(503), None);
        reads.push(failed);
        let verdict = check_clean(&writes, &reads);
        assert_eq!(verdict.reads_failed, 1, "{verdict}");
        assert!(!verdict.holds());
    }

    #[test]
    fn totals_are_read_from_a_balance_answer_and_cache_status_marks_stale() {
        let answer = serde_json::json!({
            "entry_count": 3, "credits": "12.50", "debits": "0.05", "net": "12.45"
        });
        assert_eq!(
            DayTotals::of_balance(&answer),
            Some(DayTotals {
                entry_count: 3,
                credits_minor: 1_250,
                debits_minor: 5
            })
        );
        let empty = serde_json::json!({"entry_count": 0, "credits": "0.00", "debits": "0.00"});
        assert_eq!(DayTotals::of_balance(&empty), Some(DayTotals::default()));
        assert_eq!(DayTotals::of_balance(&serde_json::json!({})), None);
        assert!(marked_stale(Some(
            "consolidation; hit; detail=stale-if-error"
        )));
        assert!(!marked_stale(None));
    }
}
