//! `Idempotency-Key`: the first answer to a key is stored in the same transaction as the work,
//! and replayed for a retry of the same request. Concurrent requests with one key serialise on
//! the key's primary key: PostgreSQL makes the later inserts wait for the first transaction, so
//! exactly one does the work and the rest replay its answer.
//!
//! Keys expire: a key older than `IDEMPOTENCY_KEY_RETENTION_SECONDS` is a new request. The claim
//! takes over an expired row in the same statement (`ON CONFLICT ... DO UPDATE ... WHERE`
//! expired), so there is no window between "expired" and "claimed" for a concurrent request,
//! and the pruning task deleting it meanwhile only turns the claim into a plain insert.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};

use cashflow_platform::edge::ApiError;

/// Header name.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// The key of a request and the fingerprint of what was asked.
#[derive(Debug, Clone)]
pub struct Idempotency {
    key: String,
    request_hash: String,
}

/// What the key says about this request.
#[derive(Debug)]
pub enum Claim {
    /// First time: do the work, then [`complete`].
    New,
    /// Seen before with the same request: answer this.
    Replay(StatusCode, serde_json::Value),
}

impl Idempotency {
    /// Reads the header, if any. The fingerprint covers the method, path and body.
    pub fn from_request(
        headers: &HeaderMap,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get(HEADER) else {
            return Ok(None);
        };
        let key = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
            .ok_or_else(|| {
                ApiError::parameter(
                    "Idempotency-Key",
                    format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
                )
            })?;
        let mut hasher = Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update(b" ");
        hasher.update(path.as_bytes());
        hasher.update(b"\n");
        hasher.update(body);
        Ok(Some(Self {
            key: key.to_string(),
            request_hash: format!("{:x}", hasher.finalize()),
        }))
    }

    /// Claims the key inside `tx`, waiting for a concurrent holder of the key to finish. A key
    /// stored more than `window` ago is claimed afresh, whatever request it belonged to.
    pub async fn claim(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        merchant: &str,
        window: Duration,
    ) -> Result<Claim, ApiError> {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys AS k (merchant_id, idempotency_key, request_hash) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (merchant_id, idempotency_key) DO UPDATE SET \
               request_hash = EXCLUDED.request_hash, response_status = NULL, \
               response_body = NULL, created_at = now() \
             WHERE k.created_at < now() - make_interval(secs => $4)",
        )
        .bind(merchant)
        .bind(&self.key)
        .bind(&self.request_hash)
        .bind(window.as_secs_f64())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::New);
        }
        let (hash, status, body): (String, Option<i16>, Option<serde_json::Value>) =
            sqlx::query_as(
                "SELECT request_hash, response_status, response_body FROM idempotency_keys \
             WHERE merchant_id = $1 AND idempotency_key = $2",
            )
            .bind(merchant)
            .bind(&self.key)
            .fetch_one(&mut **tx)
            .await?;
        answer(&hash, status, body, self).map(|(status, body)| Claim::Replay(status, body))
    }

    /// The key as the client sent it (trimmed).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The fingerprint of the request (method, path and body).
    pub fn request_hash(&self) -> &str {
        &self.request_hash
    }

    /// Whether `other` is the same request (method, path and body) as this one.
    pub fn same_request(&self, other: &Self) -> bool {
        self.request_hash == other.request_hash
    }

    /// Stores the answer in the same transaction as the work.
    pub async fn complete(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        merchant: &str,
        status: StatusCode,
        body: &serde_json::Value,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE idempotency_keys SET response_status = $3, response_body = $4 \
             WHERE merchant_id = $1 AND idempotency_key = $2",
        )
        .bind(merchant)
        .bind(&self.key)
        .bind(i16::try_from(status.as_u16()).unwrap_or(500))
        .bind(body)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// The first answer to a key, read back for a retry: status, body (JSON text) and the entry id
/// it names, if any (for the `Location` header).
#[derive(Debug, Clone, PartialEq)]
pub struct FirstAnswer {
    /// The stored status.
    pub status: StatusCode,
    /// The stored body (JSON text).
    pub body: String,
    /// The body's `id`, if any.
    pub id: Option<String>,
}

/// What keys that a batch's claim did not take mean for their requests, in `keys`' order: the
/// first answer (same request), 422 (another request) or 409 (not there any more: pruned since
/// the claim; the client's retry claims it afresh). Read in a statement of its own after the
/// claim's: in READ COMMITTED it sees what a transaction the claim waited for committed
/// meanwhile, which the claim's own snapshot does not. A database error is returned as it is.
pub async fn first_answers(
    pool: &PgPool,
    keys: &[(&str, &Idempotency)],
) -> Result<Vec<Result<FirstAnswer, ApiError>>, sqlx::Error> {
    let mut stored: Vec<StoredKey> = sqlx::query_as(
        "SELECT merchant_id, idempotency_key, request_hash, response_status, \
           response_body::text, response_body ->> 'id' \
         FROM idempotency_keys \
         WHERE (merchant_id, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
    )
    .bind(keys.iter().map(|(m, _)| *m).collect::<Vec<_>>())
    .bind(keys.iter().map(|(_, k)| k.key.as_str()).collect::<Vec<_>>())
    .fetch_all(pool)
    .await?;
    Ok(keys
        .iter()
        .map(|(merchant, key)| {
            let row = stored
                .iter_mut()
                .find(|(m, k, ..)| m == merchant && *k == key.key)
                .map(|(_, _, hash, status, body, id)| {
                    (hash.clone(), *status, body.take(), id.take())
                });
            match row {
                Some((hash, status, body, id)) => answer(&hash, status, body, key)
                    .map(|(status, body)| FirstAnswer { status, body, id }),
                None => Err(ApiError::Conflict(
                    "the Idempotency-Key expired while this request ran; retry".into(),
                )),
            }
        })
        .collect())
}

/// A stored key: merchant, key, request hash, answer status, body (JSON text) and its `id`.
type StoredKey = (
    String,
    String,
    String,
    Option<i16>,
    Option<String>,
    Option<String>,
);

/// What a stored key with `hash`, `status` and `body` means for `request`.
fn answer<B>(
    hash: &str,
    status: Option<i16>,
    body: Option<B>,
    request: &Idempotency,
) -> Result<(StatusCode, B), ApiError> {
    if hash != request.request_hash {
        return Err(ApiError::IdempotencyMismatch);
    }
    match (
        status.and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok()),
        body,
    ) {
        (Some(status), Some(body)) => Ok((status, body)),
        _ => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is in progress".into(),
        )),
    }
}
