//! Opening and closing balances from the monthly and yearly totals (ADR 0010): right whatever
//! the order, with backdated events across month and year boundaries, and redeliveries counted
//! once, compared with the sum of every earlier event.

use cashflow_contracts::EntryKind::{Credit, Debit};
use cashflow_contracts::money::format_minor;
use cashflow_contracts::{Currency, EntryRecordedV1};
use consolidation::balances;
use time::macros::date;

use crate::helpers::event;

/// A deterministic pseudo-random sequence (a 64-bit LCG): the test is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

fn expected_opening(events: &[EntryRecordedV1], day: time::Date) -> i64 {
    events
        .iter()
        .filter(|e| e.business_date < day)
        .map(|e| match e.kind {
            Credit => e.amount_minor,
            Debit => -e.amount_minor,
        })
        .sum()
}

#[tokio::test]
async fn balances_are_right_across_months_and_years_whatever_the_order_and_redelivery() {
    let stack = harness::shared().await.expect("stack");
    let scope = stack
        .scope_with(harness::ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
        .await
        .expect("scope");
    let pool = scope.pg_pool().await.expect("pool");
    let first = date!(2024 - 11 - 20);
    let mut random = Lcg(16);
    // 300 events over 15 months (two year boundaries, 15 month boundaries), then shuffled:
    // later days arrive before earlier ones, as backdated and out-of-order events do.
    let mut events: Vec<EntryRecordedV1> = (0..300)
        .map(|_| {
            let day = first + time::Duration::days(random.next(450) as i64);
            let kind = if random.next(3) == 0 { Debit } else { Credit };
            event("m1", kind, 1 + random.next(100_000) as i64, day)
        })
        .collect();
    for i in (1..events.len()).rev() {
        events.swap(i, random.next(i as u64 + 1) as usize);
    }
    // Another merchant's book on the same days must not leak in.
    let other: Vec<EntryRecordedV1> = (0..20)
        .map(|i| event("m2", Credit, 777, first + time::Duration::days(i * 20)))
        .collect();
    for batch in events.chunks(7).chain(other.chunks(5)) {
        balances::apply(&pool, batch).await.expect("apply");
    }
    // Redeliveries: whole batches again, and a batch mixing seen events with each other.
    for batch in events.chunks(7).step_by(5) {
        let outcome = balances::apply(&pool, batch).await.expect("redeliver");
        assert!(outcome.applied.is_empty(), "a redelivery changed a balance");
    }
    let mixed: Vec<EntryRecordedV1> = events.iter().step_by(13).cloned().collect();
    assert!(
        balances::apply(&pool, &mixed)
            .await
            .expect("redeliver")
            .applied
            .is_empty()
    );

    let merchant = "m1".parse().expect("merchant");
    // Every month and year boundary, a day before any event, and days after the last.
    let mut probes = vec![date!(2024 - 01 - 01), first, date!(2026 - 06 - 30)];
    let mut day = date!(2024 - 11 - 01);
    while day < date!(2026 - 03 - 01) {
        probes.extend([
            day,
            day.previous_day().expect("day"),
            day + time::Duration::days(1),
        ]);
        day = balances::month_start(day + time::Duration::days(32));
    }
    for probe in probes {
        let report = balances::report(&pool, &merchant, probe, probe, Currency::BRL)
            .await
            .expect("report");
        let opening = expected_opening(&events, probe);
        let closing = expected_opening(&events, probe.next_day().expect("day"));
        assert_eq!(
            (
                report.days[0].opening_balance.as_str(),
                report.days[0].closing_balance.as_str()
            ),
            (
                format_minor(opening).as_str(),
                format_minor(closing).as_str()
            ),
            "{probe}"
        );
    }
    // A range over a year boundary: every day's opening is the previous day's closing.
    let (from, to) = (date!(2025 - 12 - 15), date!(2026 - 01 - 20));
    let report = balances::report(&pool, &merchant, from, to, Currency::BRL)
        .await
        .expect("report");
    let mut day = from;
    for row in &report.days {
        assert_eq!(
            row.opening_balance,
            format_minor(expected_opening(&events, day)),
            "{day}"
        );
        day = day.next_day().expect("day");
    }
    // The totals agree with the days they summarise (the backfill's and the consumer's).
    let disagreeing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM monthly_totals t FULL JOIN ( \
           SELECT merchant_id, date_trunc('month', business_date)::date AS month_start, \
                  sum(credits_minor)::int8 AS c, sum(debits_minor)::int8 AS d, \
                  sum(entry_count)::int8 AS n \
           FROM daily_balances GROUP BY 1, 2) s USING (merchant_id, month_start) \
         WHERE (t.credits_minor, t.debits_minor, t.entry_count) IS DISTINCT FROM (s.c, s.d, s.n)",
    )
    .fetch_one(&pool)
    .await
    .expect("compare");
    assert_eq!(disagreeing, 0);
    pool.close().await;
}
