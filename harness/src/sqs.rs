//! SQS clients pointed at the harness's endpoint, and queue pairs (main queue + DLQ with a
//! redrive policy) created per scope.

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;

/// An SQS client for `endpoint` with LocalStack's dummy credentials.
pub fn client(endpoint: &str, region: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "harness"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// What a queue pair is made of, kept so the pair can be made again (after LocalStack restarts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePairSpec {
    /// Main queue name; the DLQ is `<name>-dlq`.
    pub name: String,
    /// Receives before the redrive policy moves a message to the DLQ.
    pub max_receive_count: u32,
    /// Default visibility timeout of the main queue, in seconds.
    pub visibility_timeout_secs: u32,
}

/// A main queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct QueuePair {
    /// Main queue name.
    pub name: String,
    /// Main queue URL.
    pub url: String,
    /// Main queue ARN.
    pub arn: String,
    /// DLQ name.
    pub dlq_name: String,
    /// DLQ URL.
    pub dlq_url: String,
    /// DLQ ARN.
    pub dlq_arn: String,
    /// Receives before a message moves to the DLQ.
    pub max_receive_count: u32,
}

impl QueuePairSpec {
    /// Creates the DLQ, then the main queue with a redrive policy to it. Creating an existing
    /// queue with the same attributes is a no-op in SQS, so this is idempotent.
    pub async fn create(&self, sqs: &aws_sdk_sqs::Client) -> anyhow::Result<QueuePair> {
        let dlq_name = format!("{}-dlq", self.name);
        let dlq_url = sqs
            .create_queue()
            .queue_name(&dlq_name)
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .with_context(|| format!("creating queue {dlq_name}"))?
            .queue_url
            .context("CreateQueue returned no URL")?;
        let dlq_arn = queue_arn(sqs, &dlq_url).await?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": self.max_receive_count.to_string(),
        });
        let url = sqs
            .create_queue()
            .queue_name(&self.name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                self.visibility_timeout_secs.to_string(),
            )
            .send()
            .await
            .with_context(|| format!("creating queue {}", self.name))?
            .queue_url
            .context("CreateQueue returned no URL")?;
        let arn = queue_arn(sqs, &url).await?;
        Ok(QueuePair {
            name: self.name.clone(),
            url,
            arn,
            dlq_name,
            dlq_url,
            dlq_arn,
            max_receive_count: self.max_receive_count,
        })
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    let attributes: HashMap<QueueAttributeName, String> = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading the ARN of {url}"))?
        .attributes
        .unwrap_or_default();
    attributes
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .context("queue has no ARN")
}
