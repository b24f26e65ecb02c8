//! SQS client setup: the standard AWS SDK configuration (region, credentials chain, IRSA in EKS),
//! with `AWS_ENDPOINT_URL` pointing at LocalStack locally; and which SQS failures are worth
//! trying again ([`is_transient`], [`retry_transient`]).
//!
//! Retries happen at two levels, on purpose. The SDK's standard retry mode retries one call:
//! throttling (`RequestThrottled`, `ThrottlingException`), 5xx answers and dropped connections,
//! at most [`SDK_MAX_ATTEMPTS`] attempts with jittered exponential backoff from 1 s, and it stops
//! retrying altogether while its retry quota (a token bucket shared by the client's calls) is
//! spent, as it is under sustained throttling. Above it, each caller backs off in its own loop
//! (the relay's cycle, the consumer's poll, a delete or a DLQ move), so that a throttled SQS sees
//! fewer requests, not more.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{Credentials, Region};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use backon::Retryable;

use crate::backoff::Backoff;

/// Attempts the SDK makes of one call (its standard mode's default, stated here because the
/// backoff of every loop above it is tuned with it in mind).
pub const SDK_MAX_ATTEMPTS: u32 = 3;

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
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS));
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

/// Whether a failed SQS call may succeed if tried again: throttling, a 5xx, a timeout, a
/// connection that failed or dropped its answer. A refusal of the request itself (a queue that
/// does not exist, an invalid receipt handle) is not.
pub fn is_transient<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    match error {
        SdkError::ServiceError(e) => e.err().code().is_none_or(is_transient_code),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => false,
    }
}

/// Whether an error code (of a call, or of a batch entry) is a transient one.
pub fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "RequestThrottled"
    ) || code.contains("Throttl")
}

/// Runs an SQS call, trying again on transient failures ([`is_transient`]) with `backoff`, at
/// most `retries` more times (each try being itself up to [`SDK_MAX_ATTEMPTS`] attempts).
pub async fn retry_transient<T, E, R, F, Fut>(
    backoff: Backoff,
    retries: usize,
    call: F,
) -> Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
{
    call.retry(backoff.retrying(retries))
        .when(is_transient)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_faults_are_transient_refusals_are_not() {
        for code in [
            "RequestThrottled",
            "ThrottlingException",
            "InternalFailure",
            "InternalError",
            "ServiceUnavailable",
            "KMS.ThrottlingException",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in [
            "ReceiptHandleIsInvalid",
            "AWS.SimpleQueueService.NonExistentQueue",
            "InvalidParameterValue",
        ] {
            assert!(!is_transient_code(code), "{code}");
        }
    }
}
