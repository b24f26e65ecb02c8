//! SQS clients pointed at the harness's endpoint, and queue pairs (main queue + DLQ with a
//! redrive policy) created per scope.

use std::collections::HashMap;

use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;
use backon::Retryable;
use cashflow_platform::backoff::Backoff;
use cashflow_platform::sqs::is_transient;

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

/// An emulator that has just started can answer a request with a 5xx while its SQS provider
/// loads (LocalStack loads it on first use; on a busy machine that takes a while), or not
/// answer in time: such failures (the platform's [`is_transient`]) are retried, with the
/// platform's backoff, for up to about 10 s. Client errors (a queue that exists with other
/// attributes) are not.
fn retrying() -> backon::ExponentialBuilder {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(2)).retrying(8)
}

impl QueuePairSpec {
    /// Creates the DLQ, then the main queue with a redrive policy to it. Creating an existing
    /// queue with the same attributes is a no-op in SQS, so this is idempotent; a transient
    /// failure of the emulator is retried ([`is_transient`]).
    pub async fn create(&self, sqs: &aws_sdk_sqs::Client) -> anyhow::Result<QueuePair> {
        let dlq_name = format!("{}-dlq", self.name);
        let dlq_url = create_queue(
            sqs,
            &dlq_name,
            &[(QueueAttributeName::MessageRetentionPeriod, "1209600".into())],
        )
        .await?;
        let dlq_arn = queue_arn(sqs, &dlq_url).await?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": self.max_receive_count.to_string(),
        });
        let url = create_queue(
            sqs,
            &self.name,
            &[
                (QueueAttributeName::RedrivePolicy, redrive.to_string()),
                (
                    QueueAttributeName::VisibilityTimeout,
                    self.visibility_timeout_secs.to_string(),
                ),
            ],
        )
        .await?;
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

/// Runs `call`, retrying transient failures of the emulator ([`is_transient`]); a final error
/// carries SQS's own message and says what was being done.
async fn with_retries<T, E, R, F, Fut>(what: impl Fn() -> String, call: F) -> anyhow::Result<T>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
{
    call.retry(retrying())
        .when(is_transient)
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
        .with_context(what)
}

/// Creates (or finds, SQS's create being idempotent) the queue `name`; returns its URL.
async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> anyhow::Result<String> {
    with_retries(
        || format!("creating queue {name}"),
        || async {
            sqs.create_queue()
                .queue_name(name)
                .set_attributes(Some(attributes.iter().cloned().collect()))
                .send()
                .await
        },
    )
    .await?
    .queue_url
    .context("CreateQueue returned no URL")
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    let attributes: HashMap<QueueAttributeName, String> = with_retries(
        || format!("reading the ARN of {url}"),
        || async {
            sqs.get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
        },
    )
    .await?
    .attributes
    .unwrap_or_default();
    attributes
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .context("queue has no ARN")
}
