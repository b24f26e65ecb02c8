//! Where the two SQS emulators (`HARNESS_SQS=localstack|moto`) differ from each other and from
//! AWS's documented behaviour, checked against the one in use, so that a change of either shows
//! up here. No service relies on any of these: the DLQ redrive is receive + send + delete, not a
//! message move task, and the consumer's visibility timeouts are capped well below 12 hours.

use std::time::Duration;

use harness::backend::SqsEmulator;

#[tokio::test]
async fn the_emulator_differs_from_aws_only_where_known() -> anyhow::Result<()> {
    let stack = harness::shared().await?;
    let scope = stack.scope().await?;
    let sqs = stack.sqs();
    let emulator = match stack.backend() {
        harness::backend::Backend::External(_) => return Ok(()),
        _ => SqsEmulator::from_env()?,
    };
    let is_moto = emulator == SqsEmulator::Moto;

    // AWS: StartMessageMoveTask redrives a DLQ. LocalStack has it; moto does not (an error).
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&scope.queues.dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("a DLQ arn");
    let moved = sqs
        .start_message_move_task()
        .source_arn(&dlq_arn)
        .send()
        .await;
    assert_eq!(
        moved.is_ok(),
        !is_moto,
        "StartMessageMoveTask on {emulator:?}: {moved:?}"
    );

    // AWS: a visibility timeout over 12 hours is InvalidParameterValue. moto agrees; LocalStack
    // accepts it.
    sqs.send_message()
        .queue_url(&scope.queues.url)
        .message_body("visibility")
        .send()
        .await?;
    let received = harness::eventually(Duration::from_secs(10), "a message", || async {
        let out = sqs
            .receive_message()
            .queue_url(&scope.queues.url)
            .wait_time_seconds(1)
            .send()
            .await
            .ok()?;
        out.messages?.into_iter().next()
    })
    .await;
    let changed = sqs
        .change_message_visibility()
        .queue_url(&scope.queues.url)
        .receipt_handle(received.receipt_handle().unwrap_or_default())
        .visibility_timeout(13 * 3600)
        .send()
        .await;
    assert_eq!(
        changed.is_ok(),
        !is_moto,
        "13 h visibility on {emulator:?}: {changed:?}"
    );

    // AWS: a second PurgeQueue within 60 s is PurgeQueueInProgress. moto agrees; LocalStack
    // purges again.
    sqs.purge_queue()
        .queue_url(&scope.queues.dlq_url)
        .send()
        .await?;
    let again = sqs
        .purge_queue()
        .queue_url(&scope.queues.dlq_url)
        .send()
        .await;
    assert_eq!(
        again.is_ok(),
        !is_moto,
        "a second purge on {emulator:?}: {again:?}"
    );

    // AWS: a queue name can be used again only 60 s after its queue was deleted. Both emulators
    // allow it at once.
    let name = format!("scope-{}-again", scope.id);
    let url = sqs.create_queue().queue_name(&name).send().await?;
    sqs.delete_queue()
        .queue_url(url.queue_url().unwrap_or_default())
        .send()
        .await?;
    let recreated = sqs.create_queue().queue_name(&name).send().await;
    assert!(
        recreated.is_ok(),
        "recreating at once on {emulator:?}: {recreated:?}"
    );
    Ok(())
}
