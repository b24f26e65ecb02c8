//! An identity provider whose keys change while it runs, and which can go down: for key
//! lifecycle tests (rotation, retirement, outage). Each test starts its own, so rotating keys
//! never disturbs the shared [`crate::IdentityProvider`] other tests use.
//!
//! It serves the same discovery document and JWKS paths as the shared provider, the JWKS with
//! `Cache-Control: max-age` when asked to, and mints with [`IssuerKeys`] so every token option
//! and flaw is available.

use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::Mutex;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::identity::{DEFAULT_AUDIENCE, DISCOVERY_PATH, IssuerKeys, JWKS_PATH};

#[derive(Debug)]
struct State {
    /// Every key in the JWKS, oldest first; the last one signs new tokens.
    published: Vec<IssuerKeys>,
    /// Answering 503 to everything.
    down: bool,
}

/// The rotating provider.
#[derive(Debug)]
pub struct RotatingIdentity {
    server: MockServer,
    issuer: String,
    max_age: Option<Duration>,
    state: Mutex<State>,
}

async fn generate(issuer: &str) -> anyhow::Result<IssuerKeys> {
    let issuer = issuer.to_string();
    tokio::task::spawn_blocking(move || IssuerKeys::generate(issuer, DEFAULT_AUDIENCE)).await?
}

impl RotatingIdentity {
    /// Starts on a free port with one key; the JWKS carries `Cache-Control: max-age` when
    /// `max_age` is given.
    pub async fn start(max_age: Option<Duration>) -> anyhow::Result<Self> {
        let server = MockServer::start().await;
        let issuer = server.uri();
        let first = generate(&issuer)
            .await
            .context("generating the first key")?;
        let identity = Self {
            server,
            issuer,
            max_age,
            state: Mutex::new(State {
                published: vec![first],
                down: false,
            }),
        };
        identity.remount().await?;
        Ok(identity)
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience of its tokens.
    pub fn audience(&self) -> &str {
        DEFAULT_AUDIENCE
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}{JWKS_PATH}", self.issuer)
    }

    /// The key new tokens are signed with (`.token()…mint()` on it).
    pub async fn signing(&self) -> IssuerKeys {
        let state = self.state.lock().await;
        state
            .published
            .last()
            .cloned()
            .expect("a key is always published")
    }

    /// Every key id in the JWKS.
    pub async fn published_kids(&self) -> Vec<String> {
        let state = self.state.lock().await;
        state.published.iter().map(|k| k.kid.clone()).collect()
    }

    /// Adds a new key to the JWKS and signs with it from now on; the old keys stay published
    /// until retired. Returns the new key.
    pub async fn rotate(&self) -> anyhow::Result<IssuerKeys> {
        let next = generate(&self.issuer).await?;
        self.state.lock().await.published.push(next.clone());
        self.remount().await?;
        Ok(next)
    }

    /// Removes the key `kid` from the JWKS (it can no longer be the signing key's only copy).
    pub async fn retire(&self, kid: &str) -> anyhow::Result<()> {
        {
            let mut state = self.state.lock().await;
            anyhow::ensure!(
                state.published.len() > 1 || state.published[0].kid != kid,
                "cannot retire the only key"
            );
            state.published.retain(|k| k.kid != kid);
        }
        self.remount().await
    }

    /// Answers 503 to everything (`true`) or serves again (`false`).
    pub async fn set_down(&self, down: bool) -> anyhow::Result<()> {
        self.state.lock().await.down = down;
        self.remount().await
    }

    /// How many JWKS requests it answered since its keys or state last changed.
    pub async fn jwks_requests(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == JWKS_PATH)
            .count()
    }

    async fn remount(&self) -> anyhow::Result<()> {
        let (jwks, down) = {
            let state = self.state.lock().await;
            let mut jwks = JwkSet { keys: Vec::new() };
            for keys in &state.published {
                jwks.keys.extend(keys.jwks()?.keys);
            }
            (jwks, state.down)
        };
        // Replaces every mock (and forgets the requests recorded so far).
        self.server.reset().await;
        if down {
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(503))
                .mount(&self.server)
                .await;
            return Ok(());
        }
        let discovery = serde_json::json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri(),
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        Mock::given(method("GET"))
            .and(path(DISCOVERY_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(discovery))
            .mount(&self.server)
            .await;
        let mut jwks_response = ResponseTemplate::new(200).set_body_json(jwks);
        if let Some(max_age) = self.max_age {
            jwks_response = jwks_response.insert_header(
                "cache-control",
                format!("public, max-age={}", max_age.as_secs()).as_str(),
            );
        }
        Mock::given(method("GET"))
            .and(path(JWKS_PATH))
            .respond_with(jwks_response)
            .mount(&self.server)
            .await;
        Ok(())
    }
}
