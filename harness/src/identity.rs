//! Identity provider emulation: an OIDC discovery document and a JWKS served by wiremock for
//! keys that mint RS256 tokens for any merchant(s) and scopes ([`crate::tokens`]), including
//! deliberately flawed ones that a correct verifier must reject. The real provider (Cognito,
//! Keycloak, Identity Server) is a third party, so this is the one stand-in the tests use.
//!
//! It also has an OAuth2 token endpoint ([`TOKEN_PATH`], advertised in discovery) granting
//! `client_credentials` to the service clients registered with [`IdentityProvider::register_client`]:
//! the consolidation calls the ledger as itself with such a token.
//!
//! Users sign in through [`crate::login`] (Authorization Code with PKCE, for the cash-flow page),
//! mounted on the same server and signing with the same key.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use cashflow_platform::auth::AuthConfig;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub use crate::tokens::{Claims, IssuerKeys, TokenFlaw, TokenRequest};

/// The audience the services expect unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "cashflow-api";
/// Path of the JWKS on the emulated provider.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Path of the OIDC discovery document.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Path of the OAuth2 token endpoint (client credentials).
pub const TOKEN_PATH: &str = "/oauth2/token";

/// What a service's verifier is told to trust an emulated provider: its issuer, audience and
/// JWKS (`None`: discovered from the issuer), 30 s of clock skew and the default key policy. The
/// one place such an [`AuthConfig`] is built; a caller that needs another leeway or key policy
/// overrides that field (`AuthConfig { keys, ..identity.auth_config() }`).
pub fn auth_config(issuer: &str, audience: &str, jwks_uri: Option<String>) -> AuthConfig {
    AuthConfig {
        issuer: issuer.to_string(),
        audience: audience.to_string(),
        jwks_uri,
        leeway: Duration::from_secs(30),
        keys: Default::default(),
    }
}

/// A service client registered with the emulated provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret` (random per registration).
    pub client_secret: String,
    /// The token endpoint.
    pub token_url: String,
}

#[derive(Debug, Clone)]
pub(crate) struct RegisteredClient {
    secret: String,
    scopes: Vec<String>,
    ttl: Duration,
}

pub(crate) type Clients =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, RegisteredClient>>>;

/// A random client secret.
pub(crate) fn new_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Registers (or re-registers) `client_id` in `clients`; what a client needs to ask
/// `token_url` for tokens.
pub(crate) fn register(
    clients: &Clients,
    token_url: String,
    client_id: &str,
    secret: &str,
    scopes: &[&str],
    ttl: Duration,
) -> ClientCredentials {
    if let Ok(mut clients) = clients.lock() {
        clients.insert(
            client_id.to_string(),
            RegisteredClient {
                secret: secret.to_string(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                ttl,
            },
        );
    }
    ClientCredentials {
        client_id: client_id.to_string(),
        client_secret: secret.to_string(),
        token_url,
    }
}

/// The token endpoint: `grant_type=client_credentials`, the client authenticated by HTTP Basic or
/// by `client_id`/`client_secret` in the form, `scope` optional (default: every scope the client
/// may have; asking for one it may not is `invalid_scope`). Answers as RFC 6749 section 4.4 says.
pub(crate) struct TokenEndpoint {
    /// Signs the tokens.
    pub(crate) keys: IssuerKeys,
    /// Who may ask.
    pub(crate) clients: Clients,
    /// Tokens issued, for tests that check refreshing.
    pub(crate) issued: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The users' login (authorization code and refresh token grants), where it is mounted.
    pub(crate) logins: Option<crate::login::Logins>,
}

impl wiremock::Respond for TokenEndpoint {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let error = |status: u16, code: &str, description: &str| {
            ResponseTemplate::new(status).set_body_json(serde_json::json!({
                "error": code, "error_description": description,
            }))
        };
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(&request.body).into_owned().collect();
        let grant = form.get("grant_type").map(String::as_str);
        if let (Some("authorization_code" | "refresh_token"), Some(logins)) = (grant, &self.logins)
        {
            return logins.grant(&self.keys, &form);
        }
        if grant != Some("client_credentials") {
            return error(
                400,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        let basic = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                let (id, secret) = s.split_once(':')?;
                Some((id.to_string(), secret.to_string()))
            });
        let (client_id, secret) = match basic {
            Some(pair) => pair,
            None => (
                form.get("client_id").cloned().unwrap_or_default(),
                form.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        let registered = self
            .clients
            .lock()
            .ok()
            .and_then(|clients| clients.get(&client_id).cloned());
        let Some(client) = registered.filter(|c| c.secret == secret) else {
            return error(401, "invalid_client", "unknown client or wrong secret");
        };
        let scopes: Vec<String> = match form.get("scope") {
            Some(asked) if !asked.trim().is_empty() => {
                asked.split_whitespace().map(str::to_string).collect()
            }
            _ => client.scopes.clone(),
        };
        if let Some(refused) = scopes.iter().find(|s| !client.scopes.contains(s)) {
            return error(
                400,
                "invalid_scope",
                &format!("client {client_id} may not have {refused}"),
            );
        }
        match self
            .keys
            .token()
            .client(client_id)
            .scopes(scopes.iter().cloned())
            .ttl(client.ttl)
            .mint()
        {
            Ok(token) => {
                self.issued
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": client.ttl.as_secs(),
                    "scope": scopes.join(" "),
                }))
            }
            Err(e) => error(500, "server_error", &e.to_string()),
        }
    }
}

/// The emulated provider: discovery and JWKS on a local HTTP server, plus token minting.
#[derive(Debug)]
pub struct IdentityProvider {
    server: MockServer,
    keys: IssuerKeys,
    clients: Clients,
    issued: std::sync::Arc<std::sync::atomic::AtomicU64>,
    logins: crate::login::Logins,
}

impl IdentityProvider {
    /// Starts a provider on a free port with fresh keys and the default audience.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the IdP")?;
        Self::start_on(listener, DEFAULT_AUDIENCE).await
    }

    /// Starts a provider on `listener` (a fixed port for `harness up`).
    pub async fn start_on(listener: std::net::TcpListener, audience: &str) -> anyhow::Result<Self> {
        let issuer = format!("http://{}", listener.local_addr()?);
        let audience = audience.to_string();
        let keys =
            tokio::task::spawn_blocking(move || IssuerKeys::generate(issuer, audience)).await??;
        Self::serve(listener, keys).await
    }

    /// Serves discovery and JWKS for `keys` on `listener`; the issuer in `keys` may name another
    /// address (e.g. `http://identity:8089` inside compose's network).
    pub async fn serve(listener: std::net::TcpListener, keys: IssuerKeys) -> anyhow::Result<Self> {
        let server = MockServer::builder().listener(listener).start().await;
        let discovery = serde_json::json!({
            "issuer": keys.issuer,
            "jwks_uri": format!("{}{JWKS_PATH}", keys.issuer),
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "token_endpoint": format!("{}{TOKEN_PATH}", keys.issuer),
            "authorization_endpoint": format!("{}{}", keys.issuer, crate::login::AUTHORIZE_PATH),
            "end_session_endpoint": format!("{}{}", keys.issuer, crate::login::LOGOUT_PATH),
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": ["entries:write", "entries:read", "balances:read", "admin", "ledger:reconcile"],
        });
        Mock::given(method("GET"))
            .and(path(DISCOVERY_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(discovery))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(JWKS_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(keys.jwks()?))
            .mount(&server)
            .await;
        let clients = Clients::default();
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let logins = crate::login::Logins::default();
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(TokenEndpoint {
                keys: keys.clone(),
                clients: std::sync::Arc::clone(&clients),
                issued: std::sync::Arc::clone(&issued),
                logins: Some(logins.clone()),
            })
            .mount(&server)
            .await;
        crate::login::mount(&server, &keys, &logins).await;
        Ok(Self {
            server,
            keys,
            clients,
            issued,
            logins,
        })
    }

    /// Registers (or re-registers, with a new secret) a service client that may be granted
    /// `scopes` by client credentials, its tokens living `ttl`.
    pub fn register_client(
        &self,
        client_id: &str,
        scopes: &[&str],
        ttl: Duration,
    ) -> ClientCredentials {
        self.register_client_with_secret(client_id, &new_secret(), scopes, ttl)
    }

    /// Same, with a given secret (`harness identity --client`, for compose).
    pub fn register_client_with_secret(
        &self,
        client_id: &str,
        secret: &str,
        scopes: &[&str],
        ttl: Duration,
    ) -> ClientCredentials {
        register(
            &self.clients,
            self.token_url(),
            client_id,
            secret,
            scopes,
            ttl,
        )
    }

    /// Registers (or replaces) a public client of the users' login (the cash-flow page):
    /// Authorization Code with PKCE, its tokens living `access_ttl`.
    pub fn register_public_client(
        &self,
        client_id: &str,
        redirect_uris: &[&str],
        access_ttl: Duration,
    ) -> crate::login::PublicClient {
        let client = crate::login::PublicClient {
            client_id: client_id.to_string(),
            redirect_uris: redirect_uris.iter().map(|u| u.to_string()).collect(),
            access_ttl,
        };
        self.logins.register(client.clone());
        client
    }

    /// What the users' login granted so far (sign-ins, refreshes).
    pub fn login_counts(&self) -> crate::login::LoginCounts {
        self.logins.counts()
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.server.uri())
    }

    /// How many client-credentials tokens the endpoint has issued.
    pub fn tokens_issued(&self) -> u64 {
        self.issued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The issuer URL (also the provider's base URL).
    pub fn issuer(&self) -> &str {
        &self.keys.issuer
    }

    /// The audience tokens are minted for.
    pub fn audience(&self) -> &str {
        &self.keys.audience
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}{JWKS_PATH}", self.server.uri())
    }

    /// What a service is told to trust this provider ([`auth_config`]).
    pub fn auth_config(&self) -> AuthConfig {
        auth_config(self.issuer(), self.audience(), Some(self.jwks_uri()))
    }

    /// The keys, for `harness up`'s state file.
    pub fn keys(&self) -> &IssuerKeys {
        &self.keys
    }

    /// Starts a token.
    pub fn token(&self) -> TokenRequest<'_> {
        self.keys.token()
    }
}
