//! The reconciler's own parts against the emulated identity provider and a real database: the
//! client-credentials token is cached and renewed before it expires; only one pass runs at a
//! time; a range outside the replay window is refused. (End to end with the ledger:
//! `features/tests/reconcile.rs`.)

use std::time::Duration;

use consolidation::config::{OAuthClientConfig, ReconcileConfig};
use consolidation::ledger_client::TokenSource;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn the_service_token_is_cached_and_renewed_before_it_expires() {
    let stack = harness::shared().await.expect("stack");
    let client = stack.identity().register_client(
        "consolidation-refresh-test",
        &["ledger:reconcile"],
        Duration::from_secs(4),
    );
    let source = TokenSource::new(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client"),
        OAuthClientConfig {
            // Discovered from the issuer, as in production.
            token_url: None,
            issuer: stack.identity().issuer().to_string(),
            client_id: client.client_id,
            client_secret: client.client_secret,
            scope: "ledger:reconcile".into(),
        },
    );
    let first = source.token().await.expect("token");
    assert_eq!(source.token().await.expect("token"), first, "cached");
    // Renewed at three quarters of its 4 s life, while it is still valid.
    let started = std::time::Instant::now();
    let renewed = harness::eventually(Duration::from_secs(10), "a renewed token", || async {
        let token = source.token().await.ok()?;
        (token != first).then_some(token)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "renewed before expiry"
    );
    assert!(!renewed.is_empty());
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_not_retried_forever() {
    let stack = harness::shared().await.expect("stack");
    let source = TokenSource::new(
        reqwest::Client::new(),
        OAuthClientConfig {
            token_url: Some(stack.identity().token_url()),
            issuer: stack.identity().issuer().to_string(),
            client_id: "nobody".into(),
            client_secret: "wrong".into(),
            scope: "ledger:reconcile".into(),
        },
    );
    let error = source.token().await.expect_err("refused");
    assert!(!error.is_transient(), "{error}");
}

#[tokio::test]
async fn the_admin_api_refuses_ranges_outside_the_window_and_merchant_tokens() {
    let app = TestApp::spawn_with(Default::default(), |config| {
        config.reconcile = ReconcileConfig {
            // Nothing listens there: the requests below never get that far.
            ledger_url: "http://127.0.0.1:9".into(),
            ..ReconcileConfig::default()
        };
    })
    .await;
    let post = |token: String, body: serde_json::Value| {
        let http = app.http.clone();
        let url = format!("{}/v1/admin/reconcile", app.address);
        async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("post");
            (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            )
        }
    };
    let (status, body) = post(
        app.admin_token(),
        json!({"from": "2020-01-01", "to": "2020-01-02"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("RECONCILE_WINDOW_DAYS"), "{body}");
    let (status, _) = post(
        app.token("m1"),
        json!({"from": "2020-01-01", "to": "2020-01-02"}),
    )
    .await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[tokio::test]
async fn only_one_pass_runs_at_a_time_across_replicas() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    let pool = app.scope.pg_pool().await.expect("pool");
    let reconciler = consolidation::reconcile::Reconciler::new(
        pool.clone(),
        ReconcileConfig {
            ledger_url: "http://127.0.0.1:9".into(),
            ..ReconcileConfig::default()
        },
        Default::default(),
    )
    .expect("reconciler");
    // Another replica holds the lock.
    let mut other = sqlx::PgConnection::connect(&app.scope.database_url)
        .await
        .expect("connect");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(consolidation::reconcile::LOCK_KEY)
        .execute(&mut other)
        .await
        .expect("lock");
    let (from, to) = reconciler.window();
    let outcome = reconciler.reconcile(from, to, None).await;
    assert!(
        matches!(outcome, Err(consolidation::reconcile::ReconcileError::Busy)),
        "{outcome:?}"
    );
    other.close().await.expect("close");
    app.stop().await;
}

#[tokio::test]
async fn dedup_records_older_than_the_retention_are_pruned_and_newer_kept() {
    // A scope without a running service: its own pruning task would race this test's.
    let stack = harness::shared().await.expect("stack");
    let scope = stack
        .scope_with(harness::ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
        .await
        .expect("scope");
    let pool = scope.pg_pool().await.expect("pool");
    let (old, recent) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    sqlx::query(
        "INSERT INTO processed_events (event_id, merchant_id, processed_at) \
         VALUES ($1, 'm1', now() - interval '46 days'), ($2, 'm1', now() - interval '44 days')",
    )
    .bind(old)
    .bind(recent)
    .execute(&pool)
    .await
    .expect("insert");
    let deleted = consolidation::retention::prune_once(
        &pool,
        consolidation::config::DEFAULT_PROCESSED_EVENTS_RETENTION,
    )
    .await
    .expect("prune");
    assert_eq!(deleted, 1);
    let left: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT event_id FROM processed_events WHERE event_id IN ($1, $2)")
            .bind(old)
            .bind(recent)
            .fetch_all(&pool)
            .await
            .expect("select");
    assert_eq!(left, vec![recent]);
    pool.close().await;
}

#[tokio::test]
async fn the_reconciler_backs_off_while_the_ledger_is_unreachable() {
    let app = TestApp::spawn().await;
    let pool = app.scope.pg_pool().await.expect("pool");
    let client = app.stack.identity().register_client(
        "consolidation-backoff-test",
        &["ledger:reconcile"],
        Duration::from_secs(60),
    );
    let reconciler = consolidation::reconcile::Reconciler::new(
        pool,
        ReconcileConfig {
            // Refused: nothing listens on the discard port.
            ledger_url: "http://127.0.0.1:9".into(),
            retry_min_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(1),
            retry_times: 3,
            client: OAuthClientConfig {
                token_url: Some(client.token_url),
                issuer: app.stack.identity().issuer().to_string(),
                client_id: client.client_id,
                client_secret: client.client_secret,
                scope: "ledger:reconcile".into(),
            },
            ..ReconcileConfig::default()
        },
        Default::default(),
    )
    .expect("reconciler");
    let (from, to) = reconciler.window();
    let started = std::time::Instant::now();
    let outcome = reconciler.reconcile(from, to, None).await;
    let waited = started.elapsed();
    match outcome {
        Err(consolidation::reconcile::ReconcileError::Ledger(e)) => {
            assert!(e.is_transient(), "{e}");
        }
        other => panic!("expected the ledger to be unavailable: {other:?}"),
    }
    // Three retries, doubling from 100 ms with jitter (each delay at least its base): >= 700 ms.
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    app.stop().await;
}

/// The environment `consolidation reconcile` reads, for `app`'s scope and a ledger at `ledger`.
fn cli_env(
    app: &TestApp,
    ledger: &str,
    client: &harness::identity::ClientCredentials,
) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", app.scope.database_url.clone()),
        ("REDIS_URL", app.scope.redis_url.clone()),
        ("ENTRIES_QUEUE_URL", app.scope.queues.url.clone()),
        ("ENTRIES_DLQ_URL", app.scope.queues.dlq_url.clone()),
        ("AWS_ENDPOINT_URL", app.scope.sqs_endpoint.clone()),
        ("AWS_REGION", app.scope.aws_region.clone()),
        ("AUTH_ISSUER", app.stack.identity().issuer().to_string()),
        ("LEDGER_URL", ledger.to_string()),
        ("OAUTH_CLIENT_ID", client.client_id.clone()),
        ("OAUTH_CLIENT_SECRET", client.client_secret.clone()),
        ("RECONCILE_GRACE_SECONDS", "0".into()),
        ("RUST_LOG", "warn".into()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec()
}

#[tokio::test]
async fn the_reconcile_cli_prints_its_report_and_refuses_a_short_retention() {
    use axum::routing::get;
    let app = TestApp::spawn().await;
    // A ledger with no entries: its digests are empty.
    let ledger = axum::Router::new().route(
        "/internal/v1/digests",
        get(|| async { axum::Json(json!({"items": [], "next_cursor": null})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ledger_url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, ledger).await });
    let client = app.stack.identity().register_client(
        "consolidation-cli-test",
        &["ledger:reconcile"],
        Duration::from_secs(60),
    );
    let today = time::OffsetDateTime::now_utc().date();
    let day = cashflow_contracts::business_date::format(today);
    let run = |extra: Vec<(String, String)>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_consolidation"));
        command
            .args(["reconcile", "--from", &day, "--to", &day])
            .env_clear()
            .envs(cli_env(&app, &ledger_url, &client))
            .envs(extra);
        async move { command.output().await.expect("run the CLI") }
    };
    let output = run(Vec::new()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["compared"], 0);

    let output = run(vec![(
        "PROCESSED_EVENTS_RETENTION_SECONDS".into(),
        (20 * 86_400).to_string(),
    )])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("PROCESSED_EVENTS_RETENTION_SECONDS")
            && stderr.contains("RECONCILE_WINDOW_DAYS"),
        "{stderr}"
    );
    server.abort();
    app.stop().await;
}
