//! JWT verification against an OIDC provider's JWKS.
//!
//! Only RS256 is accepted; the issuer, audience, expiry and not-before are checked, the key is
//! chosen by `kid`, and a token must name the merchants it may act for.
//!
//! Key lifecycle: keys are fetched on first use, and again once they are older than the
//! provider's `Cache-Control: max-age` (else [`KeyPolicy::refresh_interval`], and never longer
//! than it), so a key the provider retired stops being trusted within that time. A token naming
//! an unknown `kid` (a key just rotated in) triggers a refetch too, but at most once per
//! [`KeyPolicy::min_refetch_interval`], so that a flood of forged kids cannot hammer the
//! provider. When a fetch fails, the last good keys stay in use: a provider outage does not
//! become our outage. Only when no key was ever fetched is that a 503.
//!
//! Verified tokens are remembered, keyed by the whole token string, so that a client reusing its
//! token (as clients do until it expires) costs a lookup instead of an RSA verification. A
//! remembered token is trusted no longer than its `exp` (plus the leeway) and no longer than the
//! key set it was verified with stays fresh, and all are forgotten when the keys are refetched:
//! expiry and key retirement hold exactly as without the cache. Only successes are remembered.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

/// Least time between two JWKS fetches triggered by unknown key ids (the default of
/// [`KeyPolicy::min_refetch_interval`]).
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Where tokens come from and who they must be for.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// JWKS URL; `None` discovers it from `{issuer}/.well-known/openid-configuration`.
    pub jwks_uri: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// How keys are fetched and refreshed.
    pub keys: KeyPolicy,
}

/// How the verifier fetches the provider's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// One discovery or JWKS request, connecting included (`JWKS_FETCH_TIMEOUT_MS`, default
    /// 3000): a provider that hangs must not hold requests until their own deadline.
    pub fetch_timeout: Duration,
    /// Longest time keys are used without refetching (`JWKS_REFRESH_INTERVAL_MS`, default
    /// 300000); a shorter `Cache-Control: max-age` from the provider wins. Bounds how long a
    /// retired key is still trusted.
    pub refresh_interval: Duration,
    /// Least time between two fetches, for unknown kids and after failures
    /// (`JWKS_MIN_REFETCH_INTERVAL_MS`, default 10000).
    pub min_refetch_interval: Duration,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            fetch_timeout: Duration::from_secs(3),
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: MIN_REFRESH_INTERVAL,
        }
    }
}

impl KeyPolicy {
    /// From the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        Ok(Self {
            fetch_timeout: crate::deadline::millis_or_default(
                "JWKS_FETCH_TIMEOUT_MS",
                d.fetch_timeout,
            )?,
            refresh_interval: crate::deadline::millis_or_default(
                "JWKS_REFRESH_INTERVAL_MS",
                d.refresh_interval,
            )?,
            min_refetch_interval: crate::deadline::millis_or_default(
                "JWKS_MIN_REFETCH_INTERVAL_MS",
                d.min_refetch_interval,
            )?,
        })
    }
}

impl AuthConfig {
    /// From `AUTH_ISSUER`, `AUTH_AUDIENCE` (default `cashflow-api`) and `AUTH_JWKS_URI`
    /// (default: discovered from the issuer), with 30 s of clock skew tolerated.
    pub fn from_env() -> anyhow::Result<Self> {
        use crate::config::{optional, or_default, required};
        Ok(Self {
            issuer: required("AUTH_ISSUER")?,
            audience: or_default("AUTH_AUDIENCE", "cashflow-api".to_string())?,
            jwks_uri: optional("AUTH_JWKS_URI"),
            leeway: Duration::from_secs(30),
            keys: KeyPolicy::from_env()?,
        })
    }
}

/// Who is calling, as the verified token says. A service (client-credentials token) has no
/// merchants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `sub`.
    pub subject: String,
    /// Merchants the caller may act for.
    pub merchants: Vec<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the caller may act for `merchant`.
    pub fn may_act_for(&self, merchant: &str) -> bool {
        self.merchants.iter().any(|m| m == merchant)
    }
}

/// Why a token was refused. Every variant but `KeysUnavailable` is the caller's fault (401).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is not a well-formed JWT.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The token's algorithm is not RS256.
    #[error("the token must be signed with RS256, not {0}")]
    Algorithm(String),
    /// No key with the token's `kid`.
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    /// Signature, issuer, audience, expiry or not-before check failed.
    #[error("the token is invalid: {0}")]
    Invalid(String),
    /// The token names no merchant.
    #[error("the token carries no merchants claim")]
    NoMerchant,
    /// The JWKS could not be fetched (a 503, not the caller's fault).
    #[error("the identity provider's keys are unavailable: {0}")]
    KeysUnavailable(String),
}

#[derive(Debug, Deserialize)]
struct TokenClaims {
    /// Expiry (seconds since the epoch); required and checked by the validation.
    exp: u64,
    sub: Option<String>,
    #[serde(default)]
    merchants: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<String>,
    /// Set by the provider on client-credentials tokens (RFC 9068): a service, not a user.
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    jwks_uri: String,
}

/// The keys in use and when they must be refetched.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// `None` before the first successful fetch.
    refresh_at: Option<Instant>,
}

impl KeySet {
    fn is_stale(&self) -> bool {
        self.refresh_at.is_none_or(|at| Instant::now() >= at)
    }
}

/// Most tokens remembered at once; past it, expired ones are dropped, and if none is, all.
const VERIFIED_CAPACITY: usize = 10_000;

/// Tokens verified recently, each with the instant it stops being trusted.
#[derive(Default)]
struct Verified {
    tokens: std::sync::Mutex<HashMap<String, (Principal, Instant)>>,
}

impl Verified {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Principal, Instant)>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, token: &str) -> Option<Principal> {
        let tokens = self.lock();
        let (principal, until) = tokens.get(token)?;
        (Instant::now() < *until).then(|| principal.clone())
    }

    fn insert(&self, token: &str, principal: &Principal, until: Instant) {
        let mut tokens = self.lock();
        if tokens.len() >= VERIFIED_CAPACITY {
            let now = Instant::now();
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= VERIFIED_CAPACITY {
                tokens.clear();
            }
        }
        tokens.insert(token.to_string(), (principal.clone(), until));
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// Verifies bearer tokens. Cheap to share behind an `Arc`.
pub struct JwtVerifier {
    config: AuthConfig,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    verified: Verified,
    /// When a fetch was last attempted, successful or not; held while fetching, so that one
    /// request fetches and the others wait for its result.
    last_attempt: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier that fetches keys lazily.
    pub fn new(config: AuthConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(config.keys.fetch_timeout)
            .timeout(config.keys.fetch_timeout)
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            keys: RwLock::default(),
            verified: Verified::default(),
            last_attempt: Mutex::default(),
        }
    }

    /// Checks a token and returns who it is for.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(principal) = self.verified.get(token) {
            return Ok(principal);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("no kid".into()))?;
        let (key, keys_fresh_until) = self.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway.as_secs();
        let data = jsonwebtoken::decode::<TokenClaims>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        // Trusted until it expires (as the validation counts: `exp` plus the leeway), and no
        // longer than its key is known to be current.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let left = claims
            .exp
            .saturating_add(self.config.leeway.as_secs())
            .saturating_sub(now);
        let mut until = Instant::now() + Duration::from_secs(left);
        if let Some(fresh) = keys_fresh_until {
            until = until.min(fresh);
        }
        // A user's token must name its merchants; a service's client-credentials token names
        // none, and may act for no merchant (only service routes accept it).
        let merchants = match (
            claims.merchants.filter(|m| !m.is_empty()),
            &claims.client_id,
        ) {
            (Some(merchants), _) => merchants,
            (None, Some(client)) if claims.sub.as_deref() == Some(client.as_str()) => Vec::new(),
            (None, _) => return Err(AuthError::NoMerchant),
        };
        let principal = Principal {
            subject: claims.sub.unwrap_or_default(),
            merchants,
            scopes: claims
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        };
        self.verified.insert(token, &principal, until);
        Ok(principal)
    }

    /// The key named `kid`, refetching the set when it is stale or lacks `kid`, and until when
    /// the set it came from is fresh.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Option<Instant>), AuthError> {
        {
            let set = self.keys.read().await;
            if !set.is_stale()
                && let Some(key) = set.keys.get(kid)
            {
                return Ok((key.clone(), set.refresh_at));
            }
        }
        let mut last = self.last_attempt.lock().await;
        let (stale, known, have_keys) = {
            let set = self.keys.read().await;
            (
                set.is_stale(),
                set.keys.contains_key(kid),
                !set.keys.is_empty(),
            )
        };
        // Another request may have refreshed while this one waited for the lock.
        let needed = stale || !known;
        let allowed = last.is_none_or(|at| at.elapsed() >= self.config.keys.min_refetch_interval);
        if needed && allowed {
            *last = Some(Instant::now());
            match self.fetch().await {
                Ok((keys, max_age)) => {
                    let ttl = max_age
                        .unwrap_or(self.config.keys.refresh_interval)
                        .min(self.config.keys.refresh_interval);
                    *self.keys.write().await = KeySet {
                        keys,
                        refresh_at: Some(Instant::now() + ttl),
                    };
                    // A key may have been retired: verify every token again.
                    self.verified.clear();
                }
                Err(e) if have_keys => {
                    tracing::warn!(error = %e, "refreshing the identity provider's keys failed; \
                                                keeping the last good keys");
                }
                Err(e) => return Err(e),
            }
        } else if !have_keys {
            return Err(AuthError::KeysUnavailable(
                "no keys fetched yet; the last attempt failed".into(),
            ));
        }
        drop(last);
        let set = self.keys.read().await;
        set.keys
            .get(kid)
            .cloned()
            .map(|key| (key, set.refresh_at))
            .ok_or(AuthError::UnknownKey)
    }

    /// The provider's keys and the `max-age` its JWKS answer allows caching them for.
    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, Option<Duration>), AuthError> {
        let unavailable = |e: reqwest::Error| AuthError::KeysUnavailable(e.to_string());
        let jwks_uri = match &self.config.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let discovery: Discovery = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(unavailable)?
                    .json()
                    .await
                    .map_err(unavailable)?;
                discovery.jwks_uri
            }
        };
        let response = self
            .http
            .get(jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?;
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let set: JwkSet = response.json().await.map_err(unavailable)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // Keys for other algorithms (or without an id) cannot verify our tokens.
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, key);
            }
        }
        Ok((keys, max_age))
    }
}

/// The `max-age` of a `Cache-Control` value (`no-cache` / `no-store` count as 0).
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-cache" || directive == "no-store" {
            return Some(Duration::ZERO);
        }
        directive
            .strip_prefix("max-age=")
            .and_then(|secs| secs.trim_matches('"').parse::<u64>().ok())
            .map(Duration::from_secs)
    })
}

/// The verified caller of a request: `Authenticated(principal)` as a handler argument.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl<S> axum::extract::FromRequestParts<S> for Authenticated
where
    std::sync::Arc<JwtVerifier>: axum::extract::FromRef<S>,
    S: Send + Sync,
{
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::FromRef;
        use axum::http::StatusCode;
        use axum::response::IntoResponse;

        let unauthorized = |detail: String| {
            let mut response = crate::problem::Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Missing or invalid credentials",
            )
            .with_detail(detail)
            .into_response();
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            response
        };
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                unauthorized("send a bearer token in the Authorization header".into())
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        let verifier = std::sync::Arc::<JwtVerifier>::from_ref(state);
        match verifier.verify(token.trim()).await {
            Ok(principal) => Ok(Self(principal)),
            Err(AuthError::KeysUnavailable(cause)) => {
                tracing::error!(%cause, "cannot fetch the identity provider's keys");
                let mut response = crate::problem::Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "identity-unavailable",
                    "Cannot verify credentials right now",
                )
                .into_response();
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(crate::deadline::RETRY_AFTER_SECONDS),
                );
                Err(response)
            }
            Err(e) => Err(unauthorized(e.to_string())),
        }
    }
}

impl Principal {
    /// 403 unless the caller holds `scope` and may act for `merchant`.
    pub fn authorize(&self, merchant: &str, scope: &str) -> Result<(), crate::problem::Problem> {
        let refused = if !self.has_scope(scope) {
            format!("the token lacks the {scope} scope")
        } else if !self.may_act_for(merchant) {
            format!("the token does not grant access to merchant {merchant}")
        } else {
            return Ok(());
        };
        Err(crate::problem::Problem::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "Not allowed",
        )
        .with_detail(refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }
}
