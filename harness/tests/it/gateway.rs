//! The local API gateway (nginx, ADR 0011): on its own against a stand-in upstream (throttling,
//! problem+json answers, request ids), and in `harness up --replicas 2`, where it keeps
//! answering while one replica of each service is SIGKILLed. Needs nginx (ci/install-deps.sh)
//! and, for the second test, the service binaries (`cargo build --workspace --bins`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use harness::gateway::{GatewayConfig, nginx_binary};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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
            ("ledger".to_string(), vec![upstream.to_string()]),
            ("consolidation".to_string(), vec![dead]),
        ]),
        rate_limit: 1,
        burst_limit: 4,
        access_log: dir.join("access.log"),
        dir: dir.clone(),
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
                "ledger".to_string(),
                vec![
                    dying_upstream().await?.to_string(),
                    echo_upstream().await?.to_string(),
                ],
            ),
            (
                "consolidation".to_string(),
                vec![echo_upstream().await?.to_string()],
            ),
        ]),
        rate_limit: 1000,
        burst_limit: 1000,
        access_log: dir.join("access.log"),
        dir: dir.clone(),
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
                "ledger".to_string(),
                vec![echo_upstream().await?.to_string()],
            ),
            (
                "consolidation".to_string(),
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

#[derive(serde::Deserialize)]
struct Replica {
    service: String,
    pid: Option<i32>,
    url: String,
}

#[tokio::test]
async fn up_with_two_replicas_keeps_answering_through_the_gateway_when_one_of_each_dies()
-> anyhow::Result<()> {
    if std::env::var("HARNESS_BACKEND").is_ok_and(|b| b == "external") {
        return Ok(());
    }
    let state = std::env::temp_dir().join(format!("harness-gw-test-{}", uuid::Uuid::new_v4()));
    let gateway_port = free_port();
    let ledger_port = free_port();
    let mut up = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("up")
        .args(["--replicas", "2"])
        .args(["--gateway-port", &gateway_port.to_string()])
        .args(["--identity-port", &free_port().to_string()])
        .args(["--ledger-port", &ledger_port.to_string()])
        .args(["--consolidation-port", &free_port().to_string()])
        .args(["--postgres-port", &free_port().to_string()])
        .args(["--redis-port", &free_port().to_string()])
        .args(["--localstack-port", &free_port().to_string()])
        .args(["--prometheus-port", "0"])
        .env("HARNESS_STATE_DIR", &state)
        .env("HARNESS_BACKEND", "native")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let pid = i32::try_from(up.id().expect("running"))?;
    let mut lines = BufReader::new(up.stdout.take().expect("piped")).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await? {
            let done = line.contains("ready");
            printed.push(line);
            if done {
                return anyhow::Ok(());
            }
        }
        anyhow::bail!("harness up ended without ready:\n{}", printed.join("\n"))
    })
    .await??;
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    let text = printed.join("\n");
    let first = printed
        .iter()
        .find(|l| !l.trim().is_empty())
        .expect("printed lines");
    // The cash-flow page first (served by the gateway at /), then the gateway itself.
    assert!(
        first.contains("page") && first.contains(&format!("{gateway}/")),
        "the page's URL comes first:\n{text}"
    );
    assert!(
        text.contains(&format!("gateway        {gateway}")),
        "the gateway's URL is printed:\n{text}"
    );
    assert!(
        text.contains(&format!("{gateway}/v1/merchants/m1/entries")),
        "the curls use the gateway:\n{text}"
    );

    let up_state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("up/state.json"))?)?;
    let replicas: Vec<Replica> = serde_json::from_value(up_state["replicas"].clone())?;
    assert_eq!(replicas.len(), 4, "two of each service");
    // The first ledger replica stays reachable on its own port.
    assert!(
        replicas
            .iter()
            .any(|r| r.url == format!("http://127.0.0.1:{ledger_port}"))
    );

    let token = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["token", "--merchant", "m9"])
        .env("HARNESS_STATE_DIR", &state)
        .output()
        .await?;
    let token = String::from_utf8(token.stdout)?.trim().to_string();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    // The page at /, with its CSP, and the identity provider same-origin under /identity/.
    let page = client.get(format!("{gateway}/")).send().await?;
    assert_eq!(page.status(), 200);
    let csp = page.headers().get("content-security-policy").cloned();
    assert_eq!(
        csp.as_ref().and_then(|v| v.to_str().ok()),
        Some(harness::page::CSP)
    );
    assert!(page.text().await?.contains("/assets/app/main.js"));
    let discovery = client
        .get(format!(
            "{gateway}/identity/.well-known/openid-configuration"
        ))
        .send()
        .await?;
    assert_eq!(discovery.status(), 200);
    let record = |amount: &'static str| {
        let client = client.clone();
        let token = token.clone();
        let gateway = gateway.clone();
        async move {
            client
                .post(format!("{gateway}/v1/merchants/m9/entries"))
                .bearer_auth(&token)
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(&serde_json::json!({"kind": "credit", "amount": amount, "currency": "BRL"}))
                .send()
                .await
        }
    };
    let recorded = record("10.00").await?;
    assert_eq!(recorded.status(), 201, "{}", recorded.text().await?);
    let entry: serde_json::Value = recorded.json().await?;
    let date = entry["business_date"].as_str().expect("a date").to_string();
    let balance_url = format!("{gateway}/v1/merchants/m9/balances/{date}");
    let credits = |expected: &'static str| {
        let client = client.clone();
        let token = token.clone();
        let url = balance_url.clone();
        async move {
            let answer = client.get(&url).bearer_auth(&token).send().await.ok()?;
            let body: serde_json::Value = answer.json().await.ok()?;
            (body["credits"] == expected).then_some(())
        }
    };
    harness::eventually(
        Duration::from_secs(30),
        "the balance through the gateway",
        || credits("10.00"),
    )
    .await;

    // One replica of each service dies; the gateway answers from the other.
    for service in ["ledger", "consolidation"] {
        let victim = replicas
            .iter()
            .find(|r| r.service == service)
            .and_then(|r| r.pid)
            .expect("a replica's pid");
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()?;
        assert!(killed.success(), "SIGKILL of {service} pid {victim}");
    }
    for i in 0..40 {
        let answer = client.get(&balance_url).bearer_auth(&token).send().await?;
        assert_eq!(answer.status(), 200, "read {i} after the kills");
        let listed = client
            .get(format!("{gateway}/v1/merchants/m9/entries?date={date}"))
            .bearer_auth(&token)
            .send()
            .await?;
        assert_eq!(listed.status(), 200, "list {i} after the kills");
    }
    let after = record("5.00").await?;
    assert_eq!(after.status(), 201, "a POST after the kills");
    // Up to the queue's visibility timeout (30 s): LocalStack may have handed the message to
    // the killed consolidation's open long poll, and delivers it again once that times out.
    harness::eventually(
        Duration::from_secs(75),
        "the second entry in the balance through the gateway",
        || credits("15.00"),
    )
    .await;

    let children = crate::up::children_of(pid);
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(stopped.success());
    let status = tokio::time::timeout(Duration::from_secs(60), up.wait()).await??;
    assert!(status.success(), "harness up exited with {status}");
    assert!(
        crate::orphans::survivors(&children).is_empty(),
        "processes outlived harness up"
    );
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}
