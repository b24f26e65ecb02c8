//! Fault controls on every dependency, on a stack of this test's own (it kills things).

use std::time::Duration;

use harness::{Dependency, Fault, ScopeOptions, Stack, StackOptions};
use redis::AsyncCommands;
use sqlx::Connection;

#[tokio::test]
async fn faults_on_each_dependency_and_restart_keeps_postgres_data() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let scope = stack
        .scope_with(ScopeOptions::default().with_migrations(&crate::NOTES))
        .await?;
    let connect = || async {
        let mut conn = sqlx::PgConnection::connect(&scope.database_url).await?;
        sqlx::query("INSERT INTO notes (body) VALUES ('written')")
            .execute(&mut conn)
            .await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
            .fetch_one(&mut conn)
            .await?;
        anyhow::Ok(n)
    };
    assert_eq!(connect().await?, 1);

    // kill -9, then restart on the same port: the row is still there.
    stack.inject(Dependency::Postgres, Fault::Kill).await?;
    assert!(
        connect().await.is_err(),
        "PostgreSQL answered after kill -9"
    );
    stack.inject(Dependency::Postgres, Fault::Restart).await?;
    assert_eq!(
        connect().await?,
        2,
        "data written before the kill survived the restart"
    );

    // Paused: the port is open but nothing answers.
    stack.inject(Dependency::Postgres, Fault::Pause).await?;
    let paused = tokio::time::timeout(Duration::from_millis(500), connect()).await;
    assert!(
        paused.is_err(),
        "PostgreSQL answered while paused: {paused:?}"
    );
    stack.inject(Dependency::Postgres, Fault::Resume).await?;
    assert_eq!(connect().await?, 3);

    // Clean stop and start.
    stack.inject(Dependency::Postgres, Fault::Stop).await?;
    assert!(connect().await.is_err());
    stack.inject(Dependency::Postgres, Fault::Restart).await?;
    assert_eq!(connect().await?, 4);

    // Redis: down, then back (empty: it is a cache, run without persistence).
    let mut redis = scope.redis().await?;
    let () = redis.set(scope.key("k"), "v").await?;
    stack.inject(Dependency::Redis, Fault::Kill).await?;
    let down: redis::RedisResult<Option<String>> = redis.get(scope.key("k")).await;
    assert!(down.is_err(), "Redis answered after kill -9");
    stack.inject(Dependency::Redis, Fault::Restart).await?;
    let mut redis = scope.redis().await?;
    let pong: String = redis::cmd("PING").query_async(&mut redis).await?;
    assert_eq!(pong, "PONG");

    // LocalStack: paused requests hang; after a restart the scope's queues exist again.
    let sqs = scope.sqs();
    stack.inject(Dependency::Sqs, Fault::Pause).await?;
    let paused = tokio::time::timeout(
        Duration::from_millis(500),
        sqs.send_message()
            .queue_url(&scope.queues.url)
            .message_body("x")
            .send(),
    )
    .await;
    assert!(paused.is_err(), "LocalStack answered while paused");
    stack.inject(Dependency::Sqs, Fault::Resume).await?;
    stack.inject(Dependency::Sqs, Fault::Kill).await?;
    assert!(
        sqs.list_queues().send().await.is_err(),
        "LocalStack answered after kill -9"
    );
    stack.inject(Dependency::Sqs, Fault::Restart).await?;
    let sqs = scope.sqs();
    sqs.send_message()
        .queue_url(&scope.queues.url)
        .message_body("after")
        .send()
        .await?;
    let got = sqs
        .receive_message()
        .queue_url(&scope.queues.url)
        .wait_time_seconds(5)
        .send()
        .await?
        .messages
        .unwrap_or_default();
    assert_eq!(got.len(), 1);

    stack.shutdown().await;
    Ok(())
}
