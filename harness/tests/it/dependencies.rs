//! Each dependency starts and answers.

use harness::ScopeOptions;
use redis::AsyncCommands;

#[tokio::test]
async fn postgres_answers_a_query_in_a_migrated_scope_database() -> anyhow::Result<()> {
    let stack = harness::shared().await?;
    let scope = stack
        .scope_with(ScopeOptions::default().with_migrations(&crate::NOTES))
        .await?;
    let pool = scope.pg_pool().await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
    assert_eq!(one, 1);
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await?;
    assert_eq!(database, scope.database);
    // The template carried the migrations over.
    sqlx::query("INSERT INTO notes (body) VALUES ('hello')")
        .execute(&pool)
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&pool)
        .await?;
    assert_eq!(count, 1);
    Ok(())
}

#[tokio::test]
async fn redis_answers_ping() -> anyhow::Result<()> {
    let scope = harness::shared().await?.scope().await?;
    let mut redis = scope.redis().await?;
    let pong: String = redis::cmd("PING").query_async(&mut redis).await?;
    assert_eq!(pong, "PONG");
    let key = scope.key("greeting");
    let () = redis.set(&key, "hi").await?;
    let value: String = redis.get(&key).await?;
    assert_eq!(value, "hi");
    Ok(())
}

#[tokio::test]
async fn sqs_creates_sends_and_receives() -> anyhow::Result<()> {
    let scope = harness::shared().await?.scope().await?;
    let sqs = scope.sqs();
    let created = sqs
        .create_queue()
        .queue_name(format!("scope-{}-extra", scope.id))
        .send()
        .await?;
    assert!(created.queue_url.is_some());
    sqs.send_message()
        .queue_url(&scope.queues.url)
        .message_body("hello")
        .send()
        .await?;
    let received = sqs
        .receive_message()
        .queue_url(&scope.queues.url)
        .wait_time_seconds(5)
        .send()
        .await?;
    let messages = received.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body.as_deref(), Some("hello"));
    Ok(())
}

/// The backend reads each dependency's CPU time (load figures divide the emulator's rate by
/// it): it grows while the dependency works. The external backend cannot tell; nothing to check.
#[tokio::test]
async fn a_dependency_s_cpu_time_grows_while_it_works() -> anyhow::Result<()> {
    use harness::backend::Dependency;
    let stack = harness::shared().await?;
    let scope = stack.scope().await?;
    let cpu = |dependency| stack.backend().cpu_time(dependency);
    let (Some(emulator), Some(postgres)) = (
        cpu(Dependency::Sqs).await?,
        cpu(Dependency::Postgres).await?,
    ) else {
        return Ok(());
    };
    let sqs = scope.sqs();
    for _ in 0..100 {
        sqs.get_queue_attributes()
            .queue_url(&scope.queues.url)
            .send()
            .await?;
    }
    let pool = scope.pg_pool().await?;
    for _ in 0..20 {
        sqlx::query("SELECT count(*) FROM generate_series(1, 100000)")
            .execute(&pool)
            .await?;
    }
    let emulator = cpu(Dependency::Sqs)
        .await?
        .unwrap_or_default()
        .saturating_sub(emulator);
    let postgres = cpu(Dependency::Postgres)
        .await?
        .unwrap_or_default()
        .saturating_sub(postgres);
    assert!(
        emulator > std::time::Duration::ZERO,
        "emulator: {emulator:?}"
    );
    assert!(
        postgres > std::time::Duration::ZERO,
        "PostgreSQL: {postgres:?}"
    );
    Ok(())
}
