//! The fault proxy in front of a real dependency: each fault does what it says, to open
//! connections as well as new ones, and heal undoes it.

use std::time::{Duration, Instant};

use harness::{FaultProxy, NetFault};
use sqlx::Connection;

async fn select_one(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(conn).await.map(|_| ())
}

#[tokio::test]
async fn latency_blackhole_reset_refuse_and_heal_on_a_postgres_link() -> anyhow::Result<()> {
    let stack = harness::shared().await?;
    let admin = &stack.endpoints().postgres_url;
    let proxy = FaultProxy::for_url(admin).await?;
    let url = proxy.url(admin);
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    select_one(&mut conn).await?;

    proxy.inject(NetFault::Latency {
        latency: Duration::from_millis(150),
        jitter: Duration::from_millis(10),
    });
    let started = Instant::now();
    select_one(&mut conn).await?;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(140),
        "latency applies to an open connection ({took:?})"
    );

    proxy.inject(NetFault::Heal);
    proxy.inject(NetFault::Blackhole);
    let hung = tokio::time::timeout(Duration::from_millis(300), select_one(&mut conn)).await;
    assert!(hung.is_err(), "a blackholed query never answers");
    drop(conn);
    let connecting = tokio::time::timeout(
        Duration::from_millis(300),
        sqlx::PgConnection::connect(&url),
    )
    .await;
    assert!(
        connecting.is_err(),
        "a blackholed connect accepts, never answers"
    );

    proxy.inject(NetFault::Heal);
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    select_one(&mut conn).await?;

    proxy.inject(NetFault::Reset);
    assert!(
        select_one(&mut conn).await.is_err(),
        "an open connection is reset"
    );
    assert!(sqlx::PgConnection::connect(&url).await.is_err());

    proxy.inject(NetFault::Heal);
    proxy.inject(NetFault::Refuse);
    let refused = harness::eventually(Duration::from_secs(2), "the port closed", || async {
        match tokio::net::TcpStream::connect(proxy.address()).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    });
    refused.await;

    proxy.inject(NetFault::Heal);
    let mut conn = harness::eventually(Duration::from_secs(2), "listening again", || async {
        sqlx::PgConnection::connect(&url).await.ok()
    })
    .await;
    select_one(&mut conn).await?;
    Ok(())
}

#[tokio::test]
async fn a_bandwidth_limit_slows_large_answers() -> anyhow::Result<()> {
    let stack = harness::shared().await?;
    let admin = &stack.endpoints().postgres_url;
    let proxy = FaultProxy::for_url(admin).await?;
    let mut conn = sqlx::PgConnection::connect(&proxy.url(admin)).await?;
    proxy.inject(NetFault::Bandwidth {
        bytes_per_second: 100_000,
    });
    let started = Instant::now();
    let text: String = sqlx::query_scalar("SELECT repeat('x', 50000)")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(text.len(), 50_000);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "50 kB at 100 kB/s takes about half a second ({took:?})"
    );
    Ok(())
}
