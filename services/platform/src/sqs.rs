//! SQS client setup: the standard AWS SDK configuration (region, credentials chain, IRSA in EKS),
//! with `AWS_ENDPOINT_URL` pointing at LocalStack locally.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{Credentials, Region};

/// Where SQS is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSettings {
    /// Endpoint override (LocalStack); `None` for AWS.
    pub endpoint_url: Option<String>,
    /// AWS region.
    pub region: String,
}

impl SqsSettings {
    /// From `AWS_ENDPOINT_URL` and `AWS_REGION` (default `us-east-1`).
    pub fn from_env() -> Self {
        Self {
            endpoint_url: crate::config::optional("AWS_ENDPOINT_URL"),
            region: crate::config::optional("AWS_REGION")
                .or_else(|| crate::config::optional("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
        }
    }

    /// An SQS client that gives up connecting after `connect_timeout` and on an attempt after
    /// `attempt_timeout` (longer than a long poll for consumers); the SDK's standard retry
    /// policy then retries, with backoff, within its attempt budget. With an endpoint override
    /// and no credentials in the environment, LocalStack's dummy credentials are used instead
    /// of probing the instance metadata service.
    pub async fn client(
        &self,
        connect_timeout: Duration,
        attempt_timeout: Duration,
    ) -> aws_sdk_sqs::Client {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(connect_timeout)
            .operation_attempt_timeout(attempt_timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .timeout_config(timeouts);
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                loader = loader.credentials_provider(Credentials::new(
                    "test",
                    "test",
                    None,
                    None,
                    "localstack",
                ));
            }
        }
        aws_sdk_sqs::Client::new(&loader.load().await)
    }
}
