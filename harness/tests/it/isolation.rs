//! Scopes never see each other, and a message received too often lands in its scope's DLQ.

use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use harness::ScopeOptions;
use redis::AsyncCommands;

#[tokio::test]
async fn two_scopes_writing_the_same_names_do_not_see_each_other() -> anyhow::Result<()> {
    let stack = harness::shared().await?;
    let options = ScopeOptions::default().with_migrations(&crate::NOTES);
    let (a, b) = tokio::join!(stack.scope_with(options), stack.scope_with(options));
    let (a, b) = (a?, b?);
    assert_ne!(a.database, b.database);
    assert_ne!(a.queues.url, b.queues.url);
    assert_ne!(a.redis_prefix, b.redis_prefix);

    // Rows: the same insert in both, each database sees only its own.
    let (pa, pb) = (a.pg_pool().await?, b.pg_pool().await?);
    sqlx::query("INSERT INTO notes (body) VALUES ('from a')")
        .execute(&pa)
        .await?;
    sqlx::query("INSERT INTO notes (body) VALUES ('from b')")
        .execute(&pb)
        .await?;
    let seen_by_a: Vec<String> = sqlx::query_scalar("SELECT body FROM notes")
        .fetch_all(&pa)
        .await?;
    let seen_by_b: Vec<String> = sqlx::query_scalar("SELECT body FROM notes")
        .fetch_all(&pb)
        .await?;
    assert_eq!(seen_by_a, ["from a"]);
    assert_eq!(seen_by_b, ["from b"]);

    // Keys: the same logical key in both.
    let (mut ra, mut rb) = (a.redis().await?, b.redis().await?);
    let () = ra.set(a.key("balance"), "1").await?;
    let () = rb.set(b.key("balance"), "2").await?;
    let va: String = ra.get(a.key("balance")).await?;
    let vb: String = rb.get(b.key("balance")).await?;
    assert_eq!((va.as_str(), vb.as_str()), ("1", "2"));

    // Queues: each receives only what was sent to it.
    let sqs = a.sqs();
    sqs.send_message()
        .queue_url(&a.queues.url)
        .message_body("for a")
        .send()
        .await?;
    sqs.send_message()
        .queue_url(&b.queues.url)
        .message_body("for b")
        .send()
        .await?;
    for (scope, expected) in [(&a, "for a"), (&b, "for b")] {
        let got = sqs
            .receive_message()
            .queue_url(&scope.queues.url)
            .max_number_of_messages(10)
            .wait_time_seconds(5)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        let bodies: Vec<_> = got.iter().filter_map(|m| m.body.as_deref()).collect();
        assert_eq!(bodies, [expected]);
    }
    Ok(())
}

#[tokio::test]
async fn a_message_received_more_than_max_receive_count_times_lands_in_the_dlq()
-> anyhow::Result<()> {
    let stack = harness::shared().await?;
    let scope = stack
        .scope_with(ScopeOptions::default().with_max_receive_count(3))
        .await?;
    let sqs = scope.sqs();
    sqs.send_message()
        .queue_url(&scope.queues.url)
        .message_body("poison")
        .send()
        .await?;

    // Receive without deleting, making it visible again at once, until it is gone.
    let mut receives = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&scope.queues.url)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        if got.is_empty() && receives > 0 {
            break;
        }
        receives += got.len();
        assert!(
            std::time::Instant::now() < deadline,
            "message never left the main queue"
        );
    }
    assert_eq!(
        receives, 3,
        "received exactly maxReceiveCount times before the redrive"
    );

    let dead = harness::eventually(
        Duration::from_secs(10),
        "the message in the DLQ",
        || async {
            let got = sqs
                .receive_message()
                .queue_url(&scope.queues.dlq_url)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .wait_time_seconds(1)
                .send()
                .await
                .ok()?;
            got.messages.unwrap_or_default().into_iter().next()
        },
    )
    .await;
    assert_eq!(dead.body.as_deref(), Some("poison"));
    Ok(())
}
