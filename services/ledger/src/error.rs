//! The one error type at the HTTP edge. 4xx explain the problem; 5xx log the cause once and
//! answer an opaque body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cashflow_platform::problem::{FieldError, Problem};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Fields failed validation.
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body is not declared as JSON.
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    /// The body is larger than the limit.
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A bad query parameter or header.
    #[error("{}: {}", .0.field, .0.message)]
    BadParameter(FieldError),
    /// A pagination cursor the API did not issue (400: it is not a value to correct but a
    /// token to pass back unchanged).
    #[error("{}: {}", .0.field, .0.message)]
    InvalidCursor(FieldError),
    /// No such resource for this merchant.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but not allowed by the rules.
    #[error("{0}")]
    Unprocessable(String),
    /// Same Idempotency-Key, different request.
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    /// A ready-made problem (authorization).
    #[error("{}", .0.title)]
    Problem(Problem),
    /// A dependency is down or too slow: 503 with Retry-After, cause logged.
    #[error("{what} is unavailable")]
    Unavailable {
        /// Which dependency, for the detail.
        what: &'static str,
        /// Why, for the log.
        cause: anyhow::Error,
    },
    /// Anything else: logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if cashflow_platform::deadline::is_unavailable(&e) {
            Self::Unavailable {
                what: "the ledger database",
                cause: anyhow::Error::new(e),
            }
        } else {
            Self::Internal(anyhow::Error::new(e))
        }
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let problem = match self {
            Self::Validation(errors) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "The request is invalid",
            )
            .with_detail(summary(&errors))
            .with_errors(errors),
            Self::MalformedJson(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON")
                    .with_detail(detail)
            }
            Self::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .with_detail(detail),
            Self::PayloadTooLarge(_) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            )
            .with_detail(detail),
            Self::BadParameter(error) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "The request is invalid",
            )
            .with_detail(format!("{}: {}", error.field, error.message))
            .with_errors(vec![error]),
            Self::InvalidCursor(error) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-cursor", "Invalid cursor")
                    .with_detail(format!("{}: {}", error.field, error.message))
                    .with_errors(vec![error])
            }
            Self::NotFound(_) => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").with_detail(detail)
            }
            Self::Conflict(_) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict").with_detail(detail)
            }
            Self::Unprocessable(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "rule-violation",
                "Not allowed by the ledger's rules",
            )
            .with_detail(detail),
            Self::IdempotencyMismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            )
            .with_detail(detail),
            Self::Problem(problem) => problem,
            Self::Unavailable { what, cause } => {
                tracing::warn!(error = ?cause, "{what} is unavailable");
                return cashflow_platform::deadline::unavailable(format!(
                    "{what} is unavailable or too slow; retry shortly"
                ));
            }
            Self::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}
