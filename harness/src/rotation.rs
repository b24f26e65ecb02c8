//! An identity provider whose keys change while it runs, and which can go down: for key
//! lifecycle tests (rotation, retirement, outage). Each test starts its own, so rotating keys
//! never disturbs the shared [`crate::IdentityProvider`] other tests use.
//!
//! It serves the same discovery document, JWKS and token endpoint paths as the shared provider,
//! the JWKS with `Cache-Control: max-age` when asked to; the token endpoint (client credentials)
//! and [`RotatingIdentity::signing`] sign with the newest key, so every token option and flaw is
//! available and a service client's tokens rotate with the keys.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::jwk::JwkSet;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::identity::{
    ClientCredentials, Clients, DEFAULT_AUDIENCE, DISCOVERY_PATH, IssuerKeys, JWKS_PATH,
    TOKEN_PATH, TokenEndpoint,
};

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
    /// Service clients of the token endpoint.
    clients: Clients,
    /// Tokens the endpoint issued.
    issued: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
            clients: Clients::default(),
            issued: std::sync::Arc::default(),
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

    /// What a service is told to trust this provider ([`crate::identity::auth_config`]).
    pub fn auth_config(&self) -> cashflow_platform::auth::AuthConfig {
        crate::identity::auth_config(self.issuer(), self.audience(), Some(self.jwks_uri()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key new tokens are signed with (`.token()…mint()` on it).
    pub fn signing(&self) -> IssuerKeys {
        let state = self.lock();
        state
            .published
            .last()
            .cloned()
            .expect("a key is always published")
    }

    /// Every key id in the JWKS.
    pub fn published_kids(&self) -> Vec<String> {
        let state = self.lock();
        state.published.iter().map(|k| k.kid.clone()).collect()
    }

    /// Adds a new key to the JWKS and signs with it from now on; the old keys stay published
    /// until retired. Returns the new key.
    pub async fn rotate(&self) -> anyhow::Result<IssuerKeys> {
        let next = generate(&self.issuer).await?;
        self.lock().published.push(next.clone());
        self.remount().await?;
        Ok(next)
    }

    /// Removes the key `kid` from the JWKS (it can no longer be the signing key's only copy).
    pub async fn retire(&self, kid: &str) -> anyhow::Result<()> {
        {
            let mut state = self.lock();
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
        self.lock().down = down;
        self.remount().await
    }

    /// Registers a service client of the token endpoint (client credentials), granted
    /// `scopes`, its tokens living `ttl` and signed by the newest key.
    pub fn register_client(
        &self,
        client_id: &str,
        scopes: &[&str],
        ttl: Duration,
    ) -> ClientCredentials {
        crate::identity::register(
            &self.clients,
            format!("{}{TOKEN_PATH}", self.issuer),
            client_id,
            &crate::identity::new_secret(),
            scopes,
            ttl,
        )
    }

    /// How many client-credentials tokens the endpoint has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
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
        let (jwks, signing, down) = {
            let state = self.lock();
            let mut jwks = JwkSet { keys: Vec::new() };
            for keys in &state.published {
                jwks.keys.extend(keys.jwks()?.keys);
            }
            let signing = state.published.last().cloned().context("no key")?;
            (jwks, signing, state.down)
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
            "token_endpoint": format!("{}{TOKEN_PATH}", self.issuer),
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(TokenEndpoint {
                keys: signing,
                clients: std::sync::Arc::clone(&self.clients),
                issued: std::sync::Arc::clone(&self.issued),
                logins: None,
            })
            .mount(&self.server)
            .await;
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
