//! The local API gateway (nginx, ADR 0011) on its own against stand-in upstreams: routing,
//! throttling, problem+json answers, request ids, a service's own 503 not resent, and a reload
//! that changes the replicas without dropping a request. With the services behind it:
//! `cluster.rs`. Needs nginx (ci/install-deps.sh).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use harness::gateway::{GatewayConfig, nginx_binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    harness::backend::native::free_port().expect("a free port")
}

/// An upstream that answers every request 200 with the `X-Request-Id` it received as the body.
async fn echo_upstream() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_lowercase();
                let id = text
                    .lines()
                    .find_map(|l| l.strip_prefix("x-request-id: "))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{id}",
                    id.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn gateway_routes_throttles_with_problem_json_and_passes_request_ids() -> anyhow::Result<()> {
    let nginx = nginx_binary().expect("nginx is installed (bash ci/install-deps.sh)");
    let upstream = echo_upstream().await?;
    // Nothing listens there: every consolidation request finds no replica.
    let dead = format!("127.0.0.1:{}", free_port());
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("gateway-test-{}", uuid::Uuid::new_v4()));
    let config = GatewayConfig {
        listen: format!("127.0.0.1:{port}"),
        upstreams: BTreeMap::from([
            (harness::Service::Ledger, vec![upstream.to_string()]),
            (harness::Service::Consolidation, vec![dead]),
        ]),
        rate_limit: 1,
        burst_limit: 4,
        access_log: dir.join("access.log"),
        dir: dir.clone(),
        ledger_internal: None,
    };
    let gateway = harness::gateway::process(&config, &nginx, dir.join("gateway.log"))?;
    gateway.start(Duration::from_secs(10)).await?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    // The client's request id reaches the service; without one, the gateway makes one.
    let echoed = client
        .get(format!("{base}/v1/merchants/m1/entries/e1"))
        .header("X-Request-Id", "req-from-client")
        .send()
        .await?;
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.text().await?, "req-from-client");
    let made = client
        .get(format!("{base}/v1/merchants/m1/entries"))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(made.len(), 32, "nginx's $request_id, got {made:?}");

    // No replica answers: 503 problem+json with Retry-After, not nginx's HTML 502.
    let down = client
        .get(format!("{base}/v1/merchants/m1/balances/2026-11-24"))
        .send()
        .await?;
    assert_eq!(down.status(), 503);
    assert_eq!(down.headers()["retry-after"], "1");
    assert_eq!(down.headers()["content-type"], "application/problem+json");

    // A path no route names (the ledger's /internal ones included) is 404 problem+json.
    let internal = client
        .get(format!("{base}/internal/v1/digests"))
        .send()
        .await?;
    assert_eq!(internal.status(), 404);
    let body: serde_json::Value = internal.json().await?;
    assert_eq!(body["status"], 404);

    // Beyond rate 1/s and burst 4, the gateway answers 429 problem+json with Retry-After.
    let mut throttled = None;
    for _ in 0..20 {
        let answer = client
            .get(format!("{base}/v1/merchants/m1/entries"))
            .send()
            .await?;
        if answer.status() == 429 {
            throttled = Some(answer);
            break;
        }
    }
    let throttled = throttled.expect("a 429 within 20 requests at rate 1/s, burst 4");
    assert_eq!(throttled.headers()["retry-after"], "1");
    assert_eq!(
        throttled.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = throttled.json().await?;
    assert_eq!(body["status"], 429);
    assert_eq!(body["title"], "Too Many Requests");

    gateway.stop(Duration::from_secs(5)).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// An upstream that reads a whole request and closes the connection without answering: a
/// replica that dies after the request reached it.
async fn dying_upstream() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            return; // dropped: closed without an answer
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// nginx's round robin sends a fresh gateway's first request to the first server: the dying one.
async fn gateway_in_front_of_a_dying_replica()
-> anyhow::Result<(harness::process::Supervised, String, std::path::PathBuf)> {
    let nginx = nginx_binary().expect("nginx is installed (bash ci/install-deps.sh)");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("gateway-test-{}", uuid::Uuid::new_v4()));
    let config = GatewayConfig {
        listen: format!("127.0.0.1:{port}"),
        upstreams: BTreeMap::from([
            (
                harness::Service::Ledger,
                vec![
                    dying_upstream().await?.to_string(),
                    echo_upstream().await?.to_string(),
                ],
            ),
            (
                harness::Service::Consolidation,
                vec![echo_upstream().await?.to_string()],
            ),
        ]),
        rate_limit: 1000,
        burst_limit: 1000,
        access_log: dir.join("access.log"),
        dir: dir.clone(),
        ledger_internal: None,
    };
    let gateway = harness::gateway::process(&config, &nginx, dir.join("gateway.log"))?;
    gateway.start(Duration::from_secs(10)).await?;
    Ok((gateway, format!("http://127.0.0.1:{port}"), dir))
}

#[tokio::test]
async fn a_post_that_reached_a_dying_replica_is_resent_only_with_an_idempotency_key()
-> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let post = |base: &str, key: Option<&str>| {
        let mut request = client
            .post(format!("{base}/v1/merchants/m1/entries"))
            .header("X-Request-Id", "resend-test")
            .header("Content-Type", "application/json")
            .body(r#"{"kind":"credit","amount":"1.00","currency":"BRL"}"#);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send()
    };

    // Without a key: the dying replica got it, so it may have recorded it; not resent.
    let (gateway, base, dir) = gateway_in_front_of_a_dying_replica().await?;
    let unkeyed = post(&base, None).await?;
    assert_eq!(unkeyed.status(), 503, "not resent to the healthy replica");
    gateway.stop(Duration::from_secs(5)).await?;
    let _ = std::fs::remove_dir_all(&dir);

    // With a key: resent, and the healthy replica answers.
    let (gateway, base, dir) = gateway_in_front_of_a_dying_replica().await?;
    let keyed = post(&base, Some("k-1")).await?;
    assert_eq!(keyed.status(), 200, "resent to the healthy replica");
    assert_eq!(keyed.text().await?, "resend-test");
    gateway.stop(Duration::from_secs(5)).await?;
    let _ = std::fs::remove_dir_all(&dir);

    // A GET is always resent.
    let (gateway, base, dir) = gateway_in_front_of_a_dying_replica().await?;
    let read = client
        .get(format!("{base}/v1/merchants/m1/entries"))
        .send()
        .await?;
    assert_eq!(read.status(), 200, "a GET goes to the healthy replica");
    gateway.stop(Duration::from_secs(5)).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A replica whose dependency is down: it answers every request with its own 503
/// problem+json (`Retry-After: 7`), and counts the requests it got in `received`.
async fn unavailable_upstream(
    received: std::sync::Arc<std::sync::atomic::AtomicU32>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    request.clear();
                    received.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = r#"{"status":503,"title":"Service Unavailable","detail":"from the replica"}"#;
                    let answer = format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
                         retry-after: 7\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn a_replicas_own_503_reaches_the_client_and_is_not_resent() -> anyhow::Result<()> {
    let nginx = nginx_binary().expect("nginx is installed (bash ci/install-deps.sh)");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("gateway-test-{}", uuid::Uuid::new_v4()));
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let config = GatewayConfig {
        listen: format!("127.0.0.1:{port}"),
        upstreams: BTreeMap::from([
            (
                harness::Service::Ledger,
                vec![echo_upstream().await?.to_string()],
            ),
            (
                harness::Service::Consolidation,
                vec![
                    unavailable_upstream(received.clone()).await?.to_string(),
                    unavailable_upstream(received.clone()).await?.to_string(),
                ],
            ),
        ]),
        rate_limit: 1000,
        burst_limit: 1000,
        access_log: dir.join("access.log"),
        dir: dir.clone(),
        ledger_internal: None,
    };
    let gateway = harness::gateway::process(&config, &nginx, dir.join("gateway.log"))?;
    gateway.start(Duration::from_secs(10)).await?;
    let url = format!("http://127.0.0.1:{port}/v1/merchants/m1/balances/2026-01-01");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    for attempt in 1..=3 {
        let answer = client.get(&url).send().await?;
        assert_eq!(answer.status(), 503);
        assert_eq!(
            answer.headers()["retry-after"],
            "7",
            "the replica's own Retry-After, not the gateway's"
        );
        let body: serde_json::Value = answer.json().await?;
        assert_eq!(body["detail"], "from the replica", "{body}");
        // Every replica shares the dependency that is down: resending to another one would
        // double the client's wait and the load on that dependency, and mark every replica
        // down for the fail timeout.
        assert_eq!(
            received.load(std::sync::atomic::Ordering::SeqCst),
            attempt,
            "one request to one replica"
        );
    }

    gateway.stop(Duration::from_secs(5)).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// An upstream that answers every request 200 with `name` as the body, after `delay`; and how
/// many requests it received.
async fn named_upstream(
    name: &'static str,
    delay: Duration,
) -> anyhow::Result<(SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU32>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = std::sync::Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = std::sync::Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    let mut request = Vec::new();
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                        name.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((addr, received))
}

/// A reload that swaps the replicas returns only once the old worker has finished the request
/// it held (so no request can reach a replica left out after it), drops nothing on the way, and
/// a service left without replicas answers 503 problem+json.
#[tokio::test]
async fn a_reload_swaps_replicas_without_dropping_a_request() -> anyhow::Result<()> {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("gateway-reload-{}", uuid::Uuid::new_v4()));
    let (slow_old, old_received) = named_upstream("old", Duration::from_millis(1500)).await?;
    let (new, _) = named_upstream("new", Duration::ZERO).await?;
    let config = GatewayConfig {
        listen: format!("127.0.0.1:{port}"),
        upstreams: BTreeMap::from([
            (harness::Service::Ledger, vec![slow_old.to_string()]),
            (harness::Service::Consolidation, vec![new.to_string()]),
        ]),
        rate_limit: 1000,
        burst_limit: 1000,
        access_log: dir.join("access.log"),
        dir: dir.clone(),
        ledger_internal: None,
    };
    let gateway =
        harness::gateway::Gateway::start(config, dir.join("gateway.log"), Duration::from_secs(10))
            .await?
            .expect("nginx is installed (bash ci/install-deps.sh)");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let ledger_url = format!("http://127.0.0.1:{port}/v1/merchants/m1/entries/e1");
    let held = tokio::spawn({
        let (client, url) = (client.clone(), ledger_url.clone());
        async move { client.get(url).send().await?.text().await }
    });
    // The slow request is in the old worker before the reload.
    harness::eventually(
        Duration::from_secs(10),
        "the request at the old replica",
        || {
            let received = std::sync::Arc::clone(&old_received);
            async move { (received.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(()) }
        },
    )
    .await;
    let asked = std::time::Instant::now();
    let took = gateway
        .update(
            BTreeMap::from([
                (harness::Service::Ledger, vec![new.to_string()]),
                (harness::Service::Consolidation, Vec::new()),
            ]),
            Vec::new(),
        )
        .await?;
    let (in_force, done) = (
        took.in_force.expect("a reload"),
        took.old_workers_done.expect("a replica was left out"),
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(1000) && in_force < done,
        "the reload returned before the old worker finished its request ({took:?})"
    );
    assert_eq!(
        held.await??,
        "old",
        "the request held across the reload was answered"
    );
    for _ in 0..20 {
        let answer = client.get(&ledger_url).send().await?;
        assert_eq!(answer.text().await?, "new");
    }
    let none = client
        .get(format!(
            "http://127.0.0.1:{port}/v1/merchants/m1/balances/2026-01-01"
        ))
        .send()
        .await?;
    assert_eq!(none.status(), 503);
    assert_eq!(none.headers()["content-type"], "application/problem+json");
    gateway.stop(Duration::from_secs(5)).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
