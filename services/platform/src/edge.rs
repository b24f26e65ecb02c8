//! The HTTP edge both services share: the one error type their handlers return, and the checks
//! every request goes through before a handler's own rules (the merchant in the path, a JSON
//! body's media type and size, a body that must be a JSON object).
//!
//! Error policy: a 4xx explains the problem (naming each field); a dependency that is down or too
//! slow is `503` with `Retry-After` ([`crate::deadline::unavailable`]); any other failure is
//! logged once with its cause and answered with an opaque 500. Every error is problem+json.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cashflow_contracts::MerchantId;
use serde::de::DeserializeOwned;

use crate::problem::{FieldError, Problem};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Fields or parameters failed validation (422, each one named).
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    /// The body is not JSON (400).
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body is not declared as JSON (415).
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    /// The body is larger than the limit (413).
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A pagination cursor the API did not issue (400: it is not a value to correct but a token
    /// to pass back unchanged).
    #[error("{}: {}", .0.field, .0.message)]
    InvalidCursor(FieldError),
    /// No such resource for this merchant (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but not allowed by the service's rules (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The same Idempotency-Key came with a different request (422).
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    /// A ready-made problem (authorization, service-specific kinds).
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
    Internal(anyhow::Error),
}

impl ApiError {
    /// A 422 naming one parameter or field.
    pub fn parameter(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// A 503: `what` (a dependency) failed or timed out; `cause` goes to the log.
    pub fn unavailable(what: &'static str, cause: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable {
            what,
            cause: cause.into(),
        }
    }
}

/// A database error: a dependency that is down or too slow (pool acquire or statement deadline,
/// connection refused or reset) is a 503; anything else an opaque 500.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::deadline::is_unavailable(&e) {
            Self::unavailable("the database", e)
        } else {
            Self::Internal(anyhow::Error::new(e))
        }
    }
}

/// A failure from deeper down: a 503 when a database deadline or lost connection caused it
/// (anywhere in its chain), else an opaque 500.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let unavailable = e
            .chain()
            .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
            .any(crate::deadline::is_unavailable);
        if unavailable {
            Self::unavailable("the database", e)
        } else {
            Self::Internal(e)
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
            Self::InvalidCursor(error) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-cursor", "Invalid cursor")
                    .with_detail(detail)
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
                "Not allowed by the service's rules",
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
                return crate::deadline::unavailable(format!(
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

/// The merchant named in the path, or a 422 saying what a merchant id looks like.
pub fn merchant_id(merchant: &str) -> Result<MerchantId, ApiError> {
    merchant
        .parse()
        .map_err(|e: cashflow_contracts::InvalidMerchantId| {
            ApiError::parameter("merchant", e.to_string())
        })
}

/// The body of a request that takes JSON: larger than `limit` is 413 (with the route's
/// `DefaultBodyLimit` set to `limit`), a non-empty body not declared `application/json` is 415.
/// An empty body passes, for routes whose body is optional.
pub fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(limit)
        } else {
            ApiError::MalformedJson(rejection.body_text())
        }
    })?;
    if !declared_json && !bytes.is_empty() {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(bytes)
}

/// A body that must be a JSON object of shape `T`: not JSON is 400; JSON of another kind (an
/// array, which serde would also take for a struct, a string, `null`) or an object with wrong
/// or unknown fields is a 422 naming `body`.
pub fn json_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value @ serde_json::Value::Object(_)) => {
            serde_json::from_value(value).map_err(|e| ApiError::parameter("body", e.to_string()))
        }
        Ok(_) => Err(ApiError::parameter("body", "must be a JSON object")),
        Err(e) => Err(ApiError::MalformedJson(e.to_string())),
    }
}

/// An optional object body: none, whitespace only or `null` is `T::default()`; otherwise as
/// [`json_object`].
pub fn optional_json_object<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    json_object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Options {
        note: Option<String>,
    }

    fn status<T: std::fmt::Debug>(result: Result<T, ApiError>) -> u16 {
        result
            .expect_err("refused")
            .into_response()
            .status()
            .as_u16()
    }

    #[test]
    fn object_bodies_are_objects() {
        assert_eq!(
            json_object::<Options>(br#"{"note":"x"}"#).expect("object"),
            Options {
                note: Some("x".into())
            }
        );
        assert_eq!(status(json_object::<Options>(b"[\"x\"]")), 422);
        assert_eq!(status(json_object::<Options>(b"null")), 422);
        assert_eq!(status(json_object::<Options>(br#"{"other":1}"#)), 422);
        assert_eq!(status(json_object::<Options>(b"{")), 400);
        assert_eq!(
            optional_json_object::<Options>(b" null ").expect("null"),
            Options::default()
        );
        assert_eq!(
            optional_json_object::<Options>(b"").expect("empty"),
            Options::default()
        );
    }

    #[test]
    fn a_body_must_be_declared_json() {
        let mut headers = HeaderMap::new();
        let body = || Ok(Bytes::from_static(b"{}"));
        assert!(matches!(
            json_body(&headers, body(), 10),
            Err(ApiError::UnsupportedMediaType)
        ));
        assert!(json_body(&headers, Ok(Bytes::new()), 10).is_ok(), "empty");
        headers.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().expect("header"),
        );
        assert!(json_body(&headers, body(), 10).is_ok());
    }

    #[test]
    fn unavailable_is_503_with_retry_after_and_internal_is_opaque() {
        let response = ApiError::unavailable("the database", anyhow::anyhow!("pool timed out"))
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        let response = ApiError::Internal(anyhow::anyhow!("secret cause")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let timed_out = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("replaying");
        assert_eq!(
            status::<()>(Err(ApiError::from(timed_out))),
            503,
            "found in the chain"
        );
    }
}
