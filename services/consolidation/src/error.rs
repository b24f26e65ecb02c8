//! The one error type at the HTTP edge. 4xx explain the problem; 5xx log the cause once and
//! answer an opaque body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cashflow_platform::problem::{FieldError, Problem};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A bad path or query parameter, or body field.
    #[error("{}: {}", .0.field, .0.message)]
    BadParameter(FieldError),
    /// A ready-made problem (authorization).
    #[error("{}", .0.title)]
    Problem(Problem),
    /// A dependency is down or too slow: 503 with Retry-After.
    #[error("{detail}")]
    Unavailable {
        /// What is unavailable.
        detail: String,
        /// Seconds to wait before trying again.
        retry_after_secs: u32,
    },
    /// Anything else: logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 422 naming the parameter.
    pub fn parameter(field: &str, message: impl Into<String>) -> Self {
        Self::BadParameter(FieldError {
            field: field.into(),
            message: message.into(),
        })
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(e))
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
        match self {
            Self::BadParameter(error) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "The request is invalid",
            )
            .with_detail(detail)
            .with_errors(vec![error]),
            Self::Problem(problem) => problem,
            Self::Unavailable {
                retry_after_secs, ..
            } => {
                let mut response = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "A dependency is unavailable",
                )
                .with_detail(detail)
                .into_response();
                if let Ok(value) = retry_after_secs.to_string().parse() {
                    response
                        .headers_mut()
                        .insert(axum::http::header::RETRY_AFTER, value);
                }
                return response;
            }
            Self::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed");
                Problem::internal()
            }
        }
        .into_response()
    }
}
