//! Step definitions of `chaos.feature`.

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
use crate::world::*;
use std::collections::HashSet;
use std::time::Instant;

use harness::netfault::NetFault;
use harness::sqs_faults::protocol::{INTERNAL_FAILURE, REQUEST_THROTTLED};
use harness::sqs_faults::{Action, Operation, Rule};
use testkit::books::DayTotals;
use testkit::history::{Day as HistoryDay, History, Read, Write, marked_stale};

/// How long after its acknowledgement an entry may still be missing from a fresh balance in
/// the history check: the consolidation is asynchronous (outbox, SQS, consumer), consumption
/// waits while Redis takes no writes (the cache fence, ADR 4), and the backlog of the scenario's
/// faults then drains at the emulator's pace (33 s seen with moto on a loaded machine, 11–13 s
/// with LocalStack). The same allowance as `sla-under-fire`'s; the check reports the largest lag
/// it saw.
const LAG_ALLOWANCE: Duration = Duration::from_secs(60);

/// How long a client keeps retrying one request before it counts it failed.
const CLIENT_DEADLINE: Duration = Duration::from_secs(90);

#[given(regex = r"^(\d+) merchants send (\d+) entries per second in total$")]
pub(crate) async fn start_load(w: &mut Platform, merchants: usize, rate: u64) {
    w.merchants = (0..merchants).map(|i| format!("chaos-{i}")).collect();
    let system = w.system();
    let source = system.token_source();
    let tokens: Vec<String> = w
        .merchants
        .iter()
        .map(|m| source.full_token(m).expect("token"))
        .collect();
    // Each merchant's current token; a 401 (its key was retired) replaces it with a fresh one.
    let tokens: Arc<Vec<std::sync::Mutex<String>>> =
        Arc::new(tokens.into_iter().map(std::sync::Mutex::new).collect());
    let history = Arc::new(History::default());
    let (http, url) = (system.http().clone(), system.ledger_url().to_string());
    let merchants_list = w.merchants.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reauthenticated = Arc::new(AtomicU64::new(0));
    let (sent2, failed2, stop2) = (Arc::clone(&sent), Arc::clone(&failed), stop.clone());
    let reauthenticated2 = Arc::clone(&reauthenticated);
    let (tokens2, history2) = (Arc::clone(&tokens), Arc::clone(&history));
    let task = tokio::spawn(async move {
        // Pacing, not waiting: one request every 1/rate s, each on its own task.
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut in_flight = tokio::task::JoinSet::new();
        let mut i: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop2.cancelled() => break,
            }
            let n = usize::try_from(i).unwrap_or_default() % merchants_list.len();
            let (credit, amount) = (!i.is_multiple_of(4), (1 + i % 97) * 100 + i % 100);
            let date = format(day(Some(i64::try_from(i % 3).unwrap_or_default())));
            let body = json!({
                "kind": if credit { "credit" } else { "debit" },
                "amount": format!("{}.{:02}", amount / 100, amount % 100),
                "currency": "BRL",
                "business_date": date,
            });
            let (http, url, tokens, source, merchant) = (
                http.clone(),
                format!("{url}/v1/merchants/{}/entries", merchants_list[n]),
                Arc::clone(&tokens2),
                source.clone(),
                merchants_list[n].clone(),
            );
            let (sent, failed) = (Arc::clone(&sent2), Arc::clone(&failed2));
            let reauthenticated = Arc::clone(&reauthenticated2);
            let history = Arc::clone(&history2);
            in_flight.spawn(async move {
                sent.fetch_add(1, Ordering::Relaxed);
                let start = Instant::now();
                // A client that does what a 503 asks: retry after Retry-After, with the same
                // Idempotency-Key, so that a retry never records twice. So does no answer at all
                // (a reset, a timeout), and a 409 for the same key still in progress. A 401 is
                // what a token signed by a retired key gets: the client gets a fresh token from
                // the provider and sends again, as an OAuth client does.
                let key = uuid::Uuid::new_v4().to_string();
                let deadline = start + CLIENT_DEADLINE;
                let acknowledged = loop {
                    let token = tokens[n].lock().map(|t| t.clone()).unwrap_or_default();
                    let answer = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &key)
                        .json(&body)
                        .send()
                        .await;
                    let wait = match answer {
                        Ok(r) if r.status() == 201 => {
                            let entry: Value = r.json().await.unwrap_or(Value::Null);
                            break entry["id"].as_str().map(str::to_string);
                        }
                        Ok(r) if r.status() == 401 => {
                            reauthenticated.fetch_add(1, Ordering::Relaxed);
                            refresh_token(&tokens[n], &source, &merchant);
                            // A new key may be a moment from being fetched (rate-limited).
                            Duration::from_millis(100)
                        }
                        Ok(r) if matches!(r.status().as_u16(), 409 | 429 | 503) => retry_after(&r),
                        Ok(_) => break None,
                        Err(_) => Duration::from_millis(500),
                    };
                    if Instant::now() > deadline {
                        break None;
                    }
                    tokio::time::sleep(wait).await;
                };
                if acknowledged.is_none() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                history.write(Write {
                    client: n,
                    day: HistoryDay::new(merchant, date),
                    totals: DayTotals::entry(credit, i64::try_from(amount).unwrap_or_default()),
                    start,
                    end: Instant::now(),
                    acknowledged,
                });
            });
            i += 1;
        }
        while in_flight.join_next().await.is_some() {}
    });
    w.load = Some(Load {
        stop,
        tasks: vec![task],
        history,
        tokens,
        sent,
        failed,
        reauthenticated,
    });
}

/// Replaces a merchant's token with a fresh one from the provider (after a 401).
fn refresh_token(token: &std::sync::Mutex<String>, source: &testkit::TokenSource, merchant: &str) {
    if let (Ok(fresh), Ok(mut current)) = (source.full_token(merchant), token.lock()) {
        *current = fresh;
    }
}

/// What a 409, 429 or 503 asks a client to wait.
fn retry_after(response: &reqwest::Response) -> Duration {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map_or(Duration::from_millis(500), Duration::from_secs)
}

#[given(regex = r"^(\d+) clients read the merchants' balances (\d+) times per second in total$")]
pub(crate) async fn start_reads(w: &mut Platform, clients: usize, rate: u64) {
    let system = w.system();
    let source = system.token_source();
    let (http, url) = (
        system.http().clone(),
        system.consolidation_url().to_string(),
    );
    let merchants = w.merchants.clone();
    let load = w.load.as_mut().expect("the writers start first");
    let period = Duration::from_micros(1_000_000 * clients as u64 / rate);
    for client in 0..clients {
        let (http, url, source, merchants) =
            (http.clone(), url.clone(), source.clone(), merchants.clone());
        let (tokens, history, stop) = (
            Arc::clone(&load.tokens),
            Arc::clone(&load.history),
            load.stop.clone(),
        );
        let reauthenticated = Arc::clone(&load.reauthenticated);
        load.tasks.push(tokio::spawn(async move {
            // One read at a time per client (its reads never overlap, so each is ordered
            // after the ones before it), paced, over every merchant's three days in turn.
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for k in 0usize.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                let n = (client + k) % merchants.len();
                let date = format(day(Some(i64::try_from(k % 3).unwrap_or_default())));
                let url = format!("{url}/v1/merchants/{}/balances/{date}", merchants[n]);
                let start = Instant::now();
                let (mut status, mut totals, mut stale) = (None, None, false);
                // The client retries what the writers retry; a 200, stale or not, is an answer.
                while Instant::now() < start + CLIENT_DEADLINE {
                    let token = tokens[n].lock().map(|t| t.clone()).unwrap_or_default();
                    let wait = match http.get(&url).bearer_auth(&token).send().await {
                        Ok(r) if r.status() == 200 => {
                            status = Some(200);
                            stale = marked_stale(
                                r.headers()
                                    .get("cache-status")
                                    .and_then(|v| v.to_str().ok()),
                            );
                            totals = DayTotals::of_balance(&r.json().await.unwrap_or(Value::Null));
                            break;
                        }
                        Ok(r) if r.status() == 401 => {
                            // The readers share the writers' tokens: whoever is refused first
                            // gets the fresh one.
                            reauthenticated.fetch_add(1, Ordering::Relaxed);
                            refresh_token(&tokens[n], &source, &merchants[n]);
                            Duration::from_millis(100)
                        }
                        Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {
                            status = Some(r.status().as_u16());
                            retry_after(&r)
                        }
                        Ok(r) => {
                            status = Some(r.status().as_u16());
                            break;
                        }
                        Err(_) => Duration::from_millis(500),
                    };
                    tokio::time::sleep(wait).await;
                }
                history.read(Read {
                    client,
                    day: HistoryDay::new(merchants[n].clone(), date),
                    start,
                    end: Instant::now(),
                    status,
                    totals,
                    stale,
                });
            }
        }));
    }
}

#[when(regex = r"^SQS throttles every call on the entries queue for (\d+) seconds$")]
pub(crate) async fn sqs_throttles(w: &mut Platform, seconds: u64) {
    sqs_window(
        w,
        "throttling",
        vec![Rule::on_every_operation(Action::Error(REQUEST_THROTTLED))],
        seconds,
    )
    .await;
}

#[when(
    regex = r"^SQS fails (\d+)% of the entries of every SendMessageBatch and DeleteMessageBatch for (\d+) seconds$"
)]
pub(crate) async fn sqs_partial_batches(w: &mut Platform, percent: u32, seconds: u64) {
    let fail = |operation| {
        Rule::on(
            operation,
            Action::FailEntries {
                share: f64::from(percent) / 100.0,
                error: INTERNAL_FAILURE,
            },
        )
    };
    sqs_window(
        w,
        "partial batches",
        vec![
            fail(Operation::SendMessageBatch),
            fail(Operation::DeleteMessageBatch),
        ],
        seconds,
    )
    .await;
}

#[when(
    regex = r"^SQS drops the answer to (\d+)% of the SendMessageBatch and DeleteMessageBatch calls for (\d+) seconds$"
)]
pub(crate) async fn sqs_lost_answers(w: &mut Platform, percent: u32, seconds: u64) {
    let drop = |operation| Rule::on(operation, Action::DropAnswer).rate(f64::from(percent) / 100.0);
    sqs_window(
        w,
        "lost answers",
        vec![
            drop(Operation::SendMessageBatch),
            drop(Operation::DeleteMessageBatch),
        ],
        seconds,
    )
    .await;
}

/// Applies `rules` to the entries queue for `seconds` (the SQS fault layer in front of the
/// emulator, ADR 0018), then heals it; each rule must have fired, or the window tested nothing.
async fn sqs_window(w: &mut Platform, name: &str, rules: Vec<Rule>, seconds: u64) {
    let system = w.system();
    let faults = system
        .placement()
        .ledger
        .sqs_faults()
        .queue(&system.ledger_scope.queues.name);
    let ids: Vec<_> = rules
        .into_iter()
        .map(|rule| {
            (
                rule.to_string(),
                faults.add(rule).expect("a documented fault"),
            )
        })
        .collect();
    hold(seconds).await;
    let fired: Vec<(String, u64)> = ids
        .into_iter()
        .map(|(rule, id)| (rule, faults.fired(id)))
        .collect();
    // Dropping the queue's faults heals it.
    drop(faults);
    println!("chaos: SQS {name} for {seconds} s: {fired:?} requests hit");
    for (rule, fired) in fired {
        assert!(fired > 0, "the SQS fault {rule} never fired in its window");
    }
}

#[when("the identity provider rotates its signing key and retires the old one")]
pub(crate) async fn rotate_keys(w: &mut Platform) {
    let identity = w.system().identity().expect("a rotating identity provider");
    let old = identity.signing().kid;
    identity.rotate().await.expect("rotate");
    // Both keys published while clients move to the new one; then the old one goes.
    hold(2).await;
    identity.retire(&old).await.expect("retire");
    hold(3).await;
}

#[when(regex = r"^the identity provider is down for (\d+) seconds$")]
pub(crate) async fn identity_down(w: &mut Platform, seconds: u64) {
    let identity = w.system().identity().expect("a rotating identity provider");
    identity.set_down(true).await.expect("down");
    hold(seconds).await;
    identity.set_down(false).await.expect("up");
}

pub(crate) async fn hold(seconds: u64) {
    // Keeps the fault in place while the load runs: the duration is the scenario, not a wait.
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[when(regex = r"^the consolidation's PostgreSQL is killed for (\d+) seconds and restarted$")]
pub(crate) async fn kill_postgres(w: &mut Platform, seconds: u64) {
    w.inject(Side::Consolidation, Dependency::Postgres, Fault::Kill)
        .await;
    hold(seconds).await;
    w.inject(Side::Consolidation, Dependency::Postgres, Fault::Restart)
        .await;
}

#[when(regex = r"^Redis is killed for (\d+) seconds and restarted$")]
pub(crate) async fn kill_redis(w: &mut Platform, seconds: u64) {
    w.inject(Side::Consolidation, Dependency::Redis, Fault::Kill)
        .await;
    hold(seconds).await;
    w.inject(Side::Consolidation, Dependency::Redis, Fault::Restart)
        .await;
}

#[when(regex = r"^LocalStack is paused for (\d+) seconds and resumed$")]
pub(crate) async fn pause_localstack(w: &mut Platform, seconds: u64) {
    w.inject(Side::Ledger, Dependency::Sqs, Fault::Pause).await;
    hold(seconds).await;
    w.inject(Side::Ledger, Dependency::Sqs, Fault::Resume).await;
}

#[when(regex = r"^the consolidation service is killed for (\d+) seconds and restarted$")]
pub(crate) async fn kill_consolidation(w: &mut Platform, seconds: u64) {
    w.system_mut().kill_consolidation();
    hold(seconds).await;
    w.system_mut()
        .start_consolidation()
        .await
        .expect("restarted");
}

#[given("every service reaches every dependency through a fault proxy")]
pub(crate) async fn through_proxies(w: &mut Platform) {
    w.system_mut()
        .route_through_proxies()
        .await
        .expect("services restarted behind fault proxies");
}

#[when(regex = r"^every link gets (\d+) ms of latency for (\d+) seconds$")]
pub(crate) async fn latency_everywhere(w: &mut Platform, millis: u64, seconds: u64) {
    net_fault_for(
        w,
        NetFault::Latency {
            latency: Duration::from_millis(millis),
            jitter: Duration::from_millis(millis / 10),
        },
        seconds,
    )
    .await;
}

#[when(regex = r"^every link is blackholed for (\d+) seconds$")]
pub(crate) async fn blackhole_everywhere(w: &mut Platform, seconds: u64) {
    net_fault_for(w, NetFault::Blackhole, seconds).await;
}

#[when(regex = r"^every link resets its connections for (\d+) seconds$")]
pub(crate) async fn reset_everywhere(w: &mut Platform, seconds: u64) {
    net_fault_for(w, NetFault::Reset, seconds).await;
}

async fn net_fault_for(w: &mut Platform, fault: NetFault, seconds: u64) {
    let links = w
        .system()
        .links
        .as_ref()
        .expect("fault proxies on the links");
    links.inject_all(fault);
    hold(seconds).await;
    links.inject_all(NetFault::Heal);
}

#[when("the load stops")]
pub(crate) async fn load_stops(w: &mut Platform) {
    let load = w.load.as_mut().expect("load");
    load.stop.cancel();
    for task in load.tasks.drain(..) {
        task.await.expect("load task");
    }
}

#[then("the ledger answered every request with 201, after retries of 503s")]
pub(crate) async fn ledger_answered(w: &mut Platform) {
    let load = w.load.as_ref().expect("load");
    let (sent, failed) = (
        load.sent.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    println!("chaos: {sent} entries sent, {failed} never answered 201 (503s retried)");
    assert!(sent > 0);
    assert_eq!(failed, 0);
}

#[then("tokens signed by the retired key were refused, and the clients' fresh tokens accepted")]
pub(crate) async fn retired_key_refused(w: &mut Platform) {
    let load = w.load.as_ref().expect("load");
    let reauthenticated = load.reauthenticated.load(Ordering::Relaxed);
    println!(
        "chaos: {reauthenticated} requests refused with 401 after the key was retired, sent again with a fresh token"
    );
    assert!(
        reauthenticated > 0,
        "the retired key was never refused: the services kept trusting it"
    );
}

#[then("for every merchant and day the consolidated totals equal the ledger's sums")]
pub(crate) async fn chaos_consistent(w: &mut Platform) {
    let system = w.system();
    let result = system
        .wait_consistent(&w.merchants, Duration::from_secs(120))
        .await;
    // Lost and double-counted entries, counted per merchant and day, for the report.
    let (mut entries, mut lost, mut double) = (0i64, 0i64, 0i64);
    for merchant in &w.merchants {
        let ledger = system.ledger_books(merchant).await.expect("ledger");
        let consolidated = system
            .consolidated_books(merchant)
            .await
            .expect("consolidated");
        for (day, totals) in &ledger.0 {
            let count = totals.entry_count;
            entries += count;
            let counted = consolidated.0.get(day).map_or(0, |c| c.entry_count);
            lost += (count - counted).max(0);
            double += (counted - count).max(0);
        }
    }
    println!("chaos: {entries} entries in the ledger, {lost} lost, {double} double-counted");
    result.expect("consistent");
}

#[then("every balance read was answered 200, after retries of 503s")]
pub(crate) async fn every_read_answered(w: &mut Platform) {
    let reads = w.load.as_ref().expect("load").history.reads();
    let failed: Vec<_> = reads.iter().filter(|r| r.status != Some(200)).collect();
    println!(
        "chaos: {} balance reads, {} never answered 200",
        reads.len(),
        failed.len()
    );
    assert!(!reads.is_empty(), "no balance was read");
    assert!(failed.is_empty(), "reads not answered 200: {failed:?}");
}

#[then(
    "no client saw a balance go back on a fresh answer, every read lay within its validity window, and the ledger lists every acknowledged entry"
)]
pub(crate) async fn history_holds(w: &mut Platform) {
    let history = &w.load.as_ref().expect("load").history;
    let system = w.system();
    let mut listed = HashSet::new();
    for day in history.acknowledged_days() {
        listed.extend(
            system
                .listed_entry_ids(&day.merchant, &day.date)
                .await
                .expect("the ledger lists the day's entries"),
        );
    }
    let verdict = history.check(&listed, LAG_ALLOWANCE);
    println!("chaos: history: {verdict}");
    assert!(verdict.reads_checked > 0, "no read to check");
    assert!(
        verdict.holds(),
        "the clients' history does not hold: {verdict}"
    );
}
