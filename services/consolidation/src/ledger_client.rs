//! Calls to the ledger's internal reconciliation routes, as the consolidation itself: an OAuth2
//! client-credentials token from the identity provider (scope `ledger:reconcile`), cached and
//! fetched again once three quarters of its lifetime have passed, so that it is refreshed before
//! it expires. Every call has a deadline; failures are split into "unavailable" (retry later:
//! connection refused, timeout, 429, 5xx) and "refused" (a 4xx: retrying will not help).

use std::time::Duration;

use cashflow_contracts::digest::{DayDigest, DigestPage};
use serde::{Deserialize, Serialize};
use time::Date;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::ReconcileConfig;

/// Deadline of one replay request.
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a call to the ledger (or the identity provider) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// Down, slow or overloaded: try again later.
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
    /// Refused the request: a configuration or programming error.
    #[error("the ledger refused the request: {0}")]
    Refused(String),
}

impl LedgerError {
    /// Whether retrying may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

fn classify(context: &str, status: reqwest::StatusCode, body: &str) -> LedgerError {
    let message = format!(
        "{context}: {status}: {}",
        body.chars().take(300).collect::<String>()
    );
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        LedgerError::Unavailable(message)
    } else {
        LedgerError::Refused(message)
    }
}

fn network(context: &str, e: &reqwest::Error) -> LedgerError {
    LedgerError::Unavailable(format!("{context}: {e}"))
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    token_endpoint: String,
}

#[derive(Debug, Clone)]
struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// The consolidation's own access token.
#[derive(Debug)]
pub struct TokenSource {
    http: reqwest::Client,
    config: crate::config::OAuthClientConfig,
    token_url: Mutex<Option<String>>,
    cached: Mutex<Option<CachedToken>>,
}

impl TokenSource {
    /// A source for `config`; nothing is fetched until the first call.
    pub fn new(http: reqwest::Client, config: crate::config::OAuthClientConfig) -> Self {
        let token_url = Mutex::new(config.token_url.clone());
        Self {
            http,
            config,
            token_url,
            cached: Mutex::default(),
        }
    }

    /// A valid token: the cached one until three quarters of its lifetime, then a new one.
    pub async fn token(&self) -> Result<String, LedgerError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.value.clone());
        }
        let url = self.token_url().await?;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", &self.config.scope)
            .finish();
        let response = self
            .http
            .post(&url)
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| network("requesting a token", &e))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(classify("requesting a token", status, &text));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| network("reading the token response", &e))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(300).max(4));
        *cached = Some(CachedToken {
            value: token.access_token.clone(),
            refresh_at: Instant::now() + lifetime * 3 / 4,
        });
        Ok(token.access_token)
    }

    /// Forgets the cached token (the ledger refused it: revoked keys, clock skew).
    pub async fn forget(&self) {
        *self.cached.lock().await = None;
    }

    async fn token_url(&self) -> Result<String, LedgerError> {
        let mut url = self.token_url.lock().await;
        if let Some(url) = url.as_ref() {
            return Ok(url.clone());
        }
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self
            .http
            .get(discovery_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| network("discovering the token endpoint", &e))?
            .json()
            .await
            .map_err(|e| network("reading the discovery document", &e))?;
        *url = Some(discovery.token_endpoint.clone());
        Ok(discovery.token_endpoint)
    }
}

/// What the ledger answers to a replay.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplayOutcome {
    /// Events put back in the ledger's outbox.
    pub replayed: u64,
    /// Entries the ledger could not replay.
    #[serde(default)]
    pub skipped: u64,
}

/// The ledger's reconciliation API.
#[derive(Debug)]
pub struct LedgerClient {
    http: reqwest::Client,
    base: String,
    tokens: TokenSource,
}

impl LedgerClient {
    /// A client for `config` (ledger URL, OAuth2 client), every call bounded by its timeout.
    pub fn new(config: &ReconcileConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .context("building the ledger's HTTP client")?;
        Ok(Self {
            tokens: TokenSource::new(http.clone(), config.client.clone()),
            http,
            base: config.ledger_url.trim_end_matches('/').to_string(),
        })
    }

    /// Every digest of `from..=to` (of one merchant, or all), following the cursor.
    pub async fn digests(
        &self,
        from: Date,
        to: Date,
        merchant: Option<&str>,
    ) -> Result<Vec<DayDigest>, LedgerError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![
                ("from", cashflow_contracts::business_date::format(from)),
                ("to", cashflow_contracts::business_date::format(to)),
                ("limit", "5000".to_string()),
            ];
            if let Some(merchant) = merchant {
                query.push(("merchant", merchant.to_string()));
            }
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.clone()));
            }
            let url = format!(
                "{}/internal/v1/digests?{}",
                self.base,
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(query)
                    .finish()
            );
            let page: DigestPage = self
                .send("reading digests", |http, token| {
                    http.get(&url).bearer_auth(token)
                })
                .await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Asks the ledger to re-publish `merchant`'s events of `from..=to`.
    pub async fn replay(
        &self,
        merchant: &str,
        from: Date,
        to: Date,
    ) -> Result<ReplayOutcome, LedgerError> {
        let url = format!("{}/internal/v1/replays", self.base);
        let body = serde_json::json!({
            "merchant_id": merchant,
            "from": cashflow_contracts::business_date::format(from),
            "to": cashflow_contracts::business_date::format(to),
        });
        // The ledger paces replays (500 events/s by default): a large merchant-day takes a
        // while, and a timeout would only make the retry start it over.
        self.send("asking for a replay", |http, token| {
            http.post(&url)
                .bearer_auth(token)
                .json(&body)
                .timeout(REPLAY_TIMEOUT)
        })
        .await
    }

    /// Sends with the current token; on 401 gets a new token and tries once more.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        context: &str,
        request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<T, LedgerError> {
        for attempt in 0..2 {
            let token = self.tokens.token().await?;
            let response = request(&self.http, &token)
                .send()
                .await
                .map_err(|e| network(context, &e))?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                self.tokens.forget().await;
                continue;
            }
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                return Err(classify(context, status, &text));
            }
            return response.json().await.map_err(|e| network(context, &e));
        }
        Err(LedgerError::Refused(format!(
            "{context}: the ledger refused a fresh token"
        )))
    }
}
