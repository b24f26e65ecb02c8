//! Step definitions of `chaos.feature`.

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
use crate::world::*;
use harness::netfault::NetFault;

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
    let (http, url) = (system.http().clone(), system.ledger_url().to_string());
    let merchants_list = w.merchants.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reauthenticated = Arc::new(AtomicU64::new(0));
    let (sent2, failed2, stop2) = (Arc::clone(&sent), Arc::clone(&failed), stop.clone());
    let reauthenticated2 = Arc::clone(&reauthenticated);
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
            let body = json!({
                "kind": if i.is_multiple_of(4) { "debit" } else { "credit" },
                "amount": format!("{}.{:02}", 1 + i % 97, i % 100),
                "currency": "BRL",
                "business_date": format(day(Some(i64::try_from(i % 3).unwrap_or_default()))),
            });
            let (http, url, tokens, source, merchant) = (
                http.clone(),
                format!("{url}/v1/merchants/{}/entries", merchants_list[n]),
                Arc::clone(&tokens),
                source.clone(),
                merchants_list[n].clone(),
            );
            let (sent, failed) = (Arc::clone(&sent2), Arc::clone(&failed2));
            let reauthenticated = Arc::clone(&reauthenticated2);
            in_flight.spawn(async move {
                sent.fetch_add(1, Ordering::Relaxed);
                // A client that does what a 503 asks: retry after Retry-After, with the same
                // Idempotency-Key, so that a retry never records twice. So does no answer at all
                // (a reset, a timeout), and a 409 for the same key still in progress. A 401 is
                // what a token signed by a retired key gets: the client gets a fresh token from
                // the provider and sends again, as an OAuth client does.
                let key = uuid::Uuid::new_v4().to_string();
                let deadline = std::time::Instant::now() + Duration::from_secs(90);
                loop {
                    let token = tokens[n].lock().map(|t| t.clone()).unwrap_or_default();
                    let answer = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &key)
                        .json(&body)
                        .send()
                        .await;
                    let wait = match answer {
                        Ok(r) if r.status() == 201 => return,
                        Ok(r) if r.status() == 401 => {
                            reauthenticated.fetch_add(1, Ordering::Relaxed);
                            if let (Ok(fresh), Ok(mut current)) =
                                (source.full_token(&merchant), tokens[n].lock())
                            {
                                *current = fresh;
                            }
                            // A new key may be a moment from being fetched (rate-limited).
                            Duration::from_millis(100)
                        }
                        Ok(r) if matches!(r.status().as_u16(), 409 | 429 | 503) => r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                            .map_or(Duration::from_millis(500), Duration::from_secs),
                        Ok(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Err(_) => Duration::from_millis(500),
                    };
                    if std::time::Instant::now() > deadline {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    tokio::time::sleep(wait).await;
                }
            });
            i += 1;
        }
        while in_flight.join_next().await.is_some() {}
    });
    w.load = Some(Load {
        stop,
        task: Some(task),
        sent,
        failed,
        reauthenticated,
    });
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
    if let Some(task) = load.task.take() {
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
