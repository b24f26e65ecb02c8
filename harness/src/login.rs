//! The identity emulator's user login, for the cash-flow page: OpenID Connect Authorization Code
//! with PKCE (S256 only) for public clients, rotating refresh tokens and RP-initiated logout
//! (ADR 0017). It runs on the same server and signs with the same key as the rest of
//! [`crate::identity`], so the page's access tokens are exactly what the services already check:
//! issuer, audience `cashflow-api`, the `merchants` claim and the scopes.
//!
//! - [`AUTHORIZE_PATH`]: `GET` shows a sign-in form (a user name and the merchants that user acts
//!   for: the emulator's stand-in for a real provider's user store); `POST` (the form) answers
//!   `303` to the client's `redirect_uri` with a one-time code bound to the PKCE challenge.
//! - the token endpoint ([`crate::identity::TOKEN_PATH`]) also grants `authorization_code` (the
//!   code and its `code_verifier`) and `refresh_token`; each refresh token is used once, and a
//!   used one presented again revokes its whole session (reuse detection, RFC 9700 4.14).
//! - [`LOGOUT_PATH`]: ends the session named by `id_token_hint` (its refresh tokens stop
//!   working) and answers `303` to `post_logout_redirect_uri`.
//!
//! A public client is registered with its redirect URIs; as RFC 8252 7.3 asks of loopback
//! redirects, a registered `http://127.0.0.1:PORT/...` (or `localhost`, `[::1]`) matches any port,
//! so one registration serves `harness up` and compose on whatever port they publish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::tokens::IssuerKeys;

/// The authorization endpoint (the sign-in form).
pub const AUTHORIZE_PATH: &str = "/oauth2/authorize";
/// The end-session endpoint (logout).
pub const LOGOUT_PATH: &str = "/oauth2/logout";
/// The scopes a user can be granted by signing in: never `admin` nor a service's scope.
pub const USER_SCOPES: [&str; 3] = ["entries:write", "entries:read", "balances:read"];
/// How long an authorization code can be exchanged.
const CODE_TTL: Duration = Duration::from_secs(60);
/// How long a session's refresh tokens live without being used.
const REFRESH_TTL: Duration = Duration::from_secs(8 * 3600);

/// A public client (no secret; PKCE proves the code's owner) registered for the login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicClient {
    /// `client_id`.
    pub client_id: String,
    /// Where codes and logouts may be sent back to (loopback ones match any port).
    pub redirect_uris: Vec<String>,
    /// Lifetime of its access and ID tokens.
    pub access_ttl: Duration,
}

#[derive(Debug)]
struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    sid: String,
    nonce: Option<String>,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct Session {
    client_id: String,
    subject: String,
    merchants: Vec<String>,
    scopes: Vec<String>,
    /// Whether `openid` was asked for (an ID token is issued).
    openid: bool,
    revoked: bool,
}

#[derive(Debug)]
struct Refresh {
    sid: String,
    used: bool,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<String, PublicClient>,
    codes: HashMap<String, Code>,
    sessions: HashMap<String, Session>,
    refresh: HashMap<String, Refresh>,
    codes_exchanged: u64,
    refreshed: u64,
}

/// The login's state: registered public clients, codes, sessions. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Logins(Arc<Mutex<State>>);

/// Counters of what the login granted, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginCounts {
    /// Codes exchanged for tokens (sign-ins).
    pub codes_exchanged: u64,
    /// Refresh-token grants answered with new tokens.
    pub refreshed: u64,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 challenge of a PKCE verifier (RFC 7636 4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `(host, port, rest)` of an `http://` URL.
fn split_http(url: &str) -> Option<(&str, &str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], &authority[i + 1..]),
        _ => (authority, ""),
    };
    Some((host, port, path))
}

/// Whether `asked` is `registered`, a loopback one matching on any port (RFC 8252 7.3).
pub fn redirect_matches(registered: &str, asked: &str) -> bool {
    if registered == asked {
        return true;
    }
    let loopback = |host: &str| matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    match (split_http(registered), split_http(asked)) {
        (Some((rh, _, rp)), Some((ah, _, ap))) => {
            loopback(rh) && rh == ah && rp == ap && !asked.contains('#')
        }
        _ => false,
    }
}

impl Logins {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or replaces) a public client.
    pub fn register(&self, client: PublicClient) {
        self.lock().clients.insert(client.client_id.clone(), client);
    }

    /// What was granted so far.
    pub fn counts(&self) -> LoginCounts {
        let state = self.lock();
        LoginCounts {
            codes_exchanged: state.codes_exchanged,
            refreshed: state.refreshed,
        }
    }

    /// The client and redirect URI of an authorization request, if both are registered.
    fn client_for(&self, query: &HashMap<String, String>) -> Result<PublicClient, String> {
        let client_id = query.get("client_id").map(String::as_str).unwrap_or("");
        let redirect_uri = query.get("redirect_uri").map(String::as_str).unwrap_or("");
        let state = self.lock();
        let client = state
            .clients
            .get(client_id)
            .ok_or_else(|| format!("unknown client_id {client_id:?}"))?;
        if !client
            .redirect_uris
            .iter()
            .any(|r| redirect_matches(r, redirect_uri))
        {
            return Err(format!(
                "redirect_uri {redirect_uri:?} is not registered for {client_id}"
            ));
        }
        Ok(client.clone())
    }

    /// The authorization endpoint: the form (`GET`), or a code for who signed in (`POST`).
    fn authorize(&self, keys: &IssuerKeys, request: &wiremock::Request) -> ResponseTemplate {
        let query: HashMap<String, String> = request.url.query_pairs().into_owned().collect();
        // Without a known client and redirect URI nothing is sent back (RFC 6749 4.1.2.1).
        let client = match self.client_for(&query) {
            Ok(client) => client,
            Err(reason) => return page(400, "Sign-in request refused", &escape(&reason)),
        };
        let redirect_uri = query["redirect_uri"].as_str();
        let state = query.get("state").map(String::as_str);
        let asked = |name: &str| query.get(name).map(String::as_str).unwrap_or("");
        if asked("response_type") != "code" {
            return redirect_back(
                redirect_uri,
                &[("error", "unsupported_response_type")],
                state,
                keys,
            );
        }
        let challenge = asked("code_challenge");
        if asked("code_challenge_method") != "S256" || !(43..=128).contains(&challenge.len()) {
            return redirect_back(
                redirect_uri,
                &[
                    ("error", "invalid_request"),
                    (
                        "error_description",
                        "PKCE is required: code_challenge with code_challenge_method=S256",
                    ),
                ],
                state,
                keys,
            );
        }
        let asked_scopes: Vec<&str> = asked("scope").split_whitespace().collect();
        if request.method.as_str() != "POST" {
            return form(200, None);
        }
        let fields: HashMap<String, String> =
            form_urlencoded::parse(&request.body).into_owned().collect();
        let subject = fields.get("username").map_or("", |u| u.trim()).to_string();
        let merchants: Vec<String> = fields
            .get("merchants")
            .map_or("", String::as_str)
            .split([',', ' '])
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect();
        let valid_id = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        };
        if !valid_id(&subject) || merchants.is_empty() || !merchants.iter().all(|m| valid_id(m)) {
            return form(
                400,
                Some(
                    "Give a user name and at least one merchant (letters, digits, - _ . @; \
                     several separated by commas).",
                ),
            );
        }
        let sid = random_token();
        let code = random_token();
        {
            let mut state = self.lock();
            state.sessions.insert(
                sid.clone(),
                Session {
                    client_id: client.client_id.clone(),
                    subject,
                    merchants,
                    scopes: USER_SCOPES
                        .iter()
                        .filter(|s| asked_scopes.contains(s))
                        .map(|s| s.to_string())
                        .collect(),
                    openid: asked_scopes.contains(&"openid"),
                    revoked: false,
                },
            );
            state.codes.insert(
                code.clone(),
                Code {
                    client_id: client.client_id,
                    redirect_uri: redirect_uri.to_string(),
                    challenge: challenge.to_string(),
                    sid,
                    nonce: query.get("nonce").cloned(),
                    expires: Instant::now() + CODE_TTL,
                },
            );
        }
        redirect_back(redirect_uri, &[("code", &code)], state, keys)
    }

    /// The token endpoint's `authorization_code` and `refresh_token` grants.
    pub(crate) fn grant(
        &self,
        keys: &IssuerKeys,
        form: &HashMap<String, String>,
    ) -> ResponseTemplate {
        let get = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        let client_id = get("client_id");
        let Some(client) = self.lock().clients.get(client_id).cloned() else {
            return oauth_error(401, "invalid_client", "unknown public client");
        };
        let sid = match get("grant_type") {
            "authorization_code" => {
                let Some(code) = self.lock().codes.remove(get("code")) else {
                    return oauth_error(400, "invalid_grant", "unknown or used code");
                };
                if code.client_id != client.client_id
                    || code.redirect_uri != get("redirect_uri")
                    || code.expires < Instant::now()
                {
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "the code is expired, or was issued to another client or redirect_uri",
                    );
                }
                if pkce_challenge(get("code_verifier")) != code.challenge {
                    return oauth_error(400, "invalid_grant", "code_verifier does not match");
                }
                self.lock().codes_exchanged += 1;
                return self.issue(keys, &client, &code.sid, code.nonce.as_deref());
            }
            "refresh_token" => {
                let mut state = self.lock();
                let Some(refresh) = state.refresh.get_mut(get("refresh_token")) else {
                    return oauth_error(400, "invalid_grant", "unknown refresh token");
                };
                let sid = refresh.sid.clone();
                if refresh.used {
                    // A stolen copy or a replay: nobody keeps this session.
                    if let Some(session) = state.sessions.get_mut(&sid) {
                        session.revoked = true;
                    }
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "the refresh token was already used; the session is revoked",
                    );
                }
                if refresh.expires < Instant::now() {
                    return oauth_error(400, "invalid_grant", "the refresh token expired");
                }
                refresh.used = true;
                state.refreshed += 1;
                sid
            }
            _ => {
                return oauth_error(
                    400,
                    "unsupported_grant_type",
                    "client_credentials, authorization_code or refresh_token",
                );
            }
        };
        self.issue(keys, &client, &sid, None)
    }

    /// Access, ID and refresh tokens for the session `sid`.
    fn issue(
        &self,
        keys: &IssuerKeys,
        client: &PublicClient,
        sid: &str,
        nonce: Option<&str>,
    ) -> ResponseTemplate {
        let session = self.lock().sessions.get(sid).cloned();
        let Some(session) = session.filter(|s| !s.revoked && s.client_id == client.client_id)
        else {
            return oauth_error(400, "invalid_grant", "the session has ended");
        };
        let access = keys
            .token()
            .subject(&session.subject)
            .merchants(session.merchants.iter().cloned())
            .scopes(session.scopes.iter().cloned())
            .ttl(client.access_ttl)
            .mint();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let ttl = i64::try_from(client.access_ttl.as_secs()).unwrap_or(3600);
        let id_token = session.openid.then(|| {
            sign(
                keys,
                &IdClaims {
                    iss: keys.issuer.clone(),
                    aud: client.client_id.clone(),
                    sub: session.subject.clone(),
                    iat: now,
                    exp: now + ttl,
                    nonce: nonce.map(str::to_string),
                    sid: sid.to_string(),
                    name: session.subject.clone(),
                    merchants: session.merchants.clone(),
                },
            )
        });
        let (access, id_token) = match (access, id_token.transpose()) {
            (Ok(access), Ok(id_token)) => (access, id_token),
            (Err(e), _) | (_, Err(e)) => return oauth_error(500, "server_error", &e.to_string()),
        };
        let refresh_token = random_token();
        self.lock().refresh.insert(
            refresh_token.clone(),
            Refresh {
                sid: sid.to_string(),
                used: false,
                expires: Instant::now() + REFRESH_TTL,
            },
        );
        let mut body = serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": client.access_ttl.as_secs(),
            "refresh_token": refresh_token,
            "scope": session.scopes.join(" "),
        });
        if let Some(id_token) = id_token {
            body["id_token"] = id_token.into();
        }
        ResponseTemplate::new(200)
            .insert_header("cache-control", "no-store")
            .set_body_json(body)
    }

    /// RP-initiated logout: ends the session of `id_token_hint`, then back to the client.
    fn logout(&self, keys: &IssuerKeys, request: &wiremock::Request) -> ResponseTemplate {
        let query: HashMap<String, String> = request.url.query_pairs().into_owned().collect();
        let hint = query
            .get("id_token_hint")
            .and_then(|token| verify_id_token(keys, token));
        let client_id = query
            .get("client_id")
            .cloned()
            .or_else(|| hint.as_ref().map(|claims| claims.aud.clone()));
        if let Some(claims) = &hint {
            let mut state = self.lock();
            if let Some(session) = state.sessions.get_mut(&claims.sid) {
                session.revoked = true;
            }
            state.refresh.retain(|_, r| r.sid != claims.sid);
        }
        let back = query.get("post_logout_redirect_uri");
        let registered = client_id
            .and_then(|id| self.lock().clients.get(&id).cloned())
            .zip(back)
            .filter(|(client, back)| {
                client
                    .redirect_uris
                    .iter()
                    .any(|r| redirect_matches(r, back))
            });
        match registered {
            Some((_, back)) => {
                redirect_back(back, &[], query.get("state").map(String::as_str), keys)
            }
            None => page(
                200,
                "Signed out",
                "You are signed out of the identity emulator.",
            ),
        }
    }
}

/// The ID token's claims.
#[derive(Debug, Serialize, Deserialize)]
struct IdClaims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    sid: String,
    name: String,
    merchants: Vec<String>,
}

fn sign(keys: &IssuerKeys, claims: &IdClaims) -> anyhow::Result<String> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(keys.kid.clone());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(keys.private_key_pem.as_bytes())?;
    Ok(jsonwebtoken::encode(&header, claims, &key)?)
}

/// An ID token this provider signed, expired or not (a logout hint may be old).
fn verify_id_token(keys: &IssuerKeys, token: &str) -> Option<IdClaims> {
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(keys.public_key_pem.as_bytes()).ok()?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[&keys.issuer]);
    jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
        .ok()
        .map(|data| data.claims)
}

/// `303` to `uri` with `params` and the client's `state`, and `iss` (RFC 9207).
fn redirect_back(
    uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
    keys: &IssuerKeys,
) -> ResponseTemplate {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    if let Some(state) = state {
        query.append_pair("state", state);
    }
    if !params.is_empty() {
        query.append_pair("iss", &keys.issuer);
    }
    let query = query.finish();
    let mut location = uri.to_string();
    if !query.is_empty() {
        location.push(if location.contains('?') { '&' } else { '?' });
        location.push_str(&query);
    }
    ResponseTemplate::new(303)
        .insert_header("location", location.as_str())
        .insert_header("cache-control", "no-store")
}

fn oauth_error(status: u16, code: &str, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("cache-control", "no-store")
        .set_body_json(serde_json::json!({"error": code, "error_description": description}))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A plain HTML page (no script, no inline style: it is served under the page's strict CSP).
fn page(status: u16, title: &str, body_html: &str) -> ResponseTemplate {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — identity emulator</title></head>\n<body><main>\
         <h1>{title}</h1>\n{body_html}\n</main></body></html>\n"
    );
    ResponseTemplate::new(status)
        .insert_header("cache-control", "no-store")
        .set_body_raw(html, "text/html; charset=utf-8")
}

/// The sign-in form. It posts to its own URL, which keeps the authorization request's query.
fn form(status: u16, error: Option<&str>) -> ResponseTemplate {
    let error = error.map_or(String::new(), |e| {
        format!("<p role=\"alert\" id=\"login-error\">{}</p>\n", escape(e))
    });
    let described = if error.is_empty() {
        ""
    } else {
        " aria-describedby=\"login-error\""
    };
    page(
        status,
        "Sign in",
        &format!(
            "<p>The local identity provider: any user name signs in, acting for the merchants \
             you name.</p>\n{error}<form method=\"post\"{described}>\n\
             <p><label for=\"username\">User name</label><br>\
             <input id=\"username\" name=\"username\" autocomplete=\"username\" required \
             autofocus></p>\n\
             <p><label for=\"merchants\">Merchants (separated by commas)</label><br>\
             <input id=\"merchants\" name=\"merchants\" value=\"m1\" required></p>\n\
             <p><button type=\"submit\" id=\"sign-in\">Sign in</button></p>\n</form>"
        ),
    )
}

/// Mounts the authorization and end-session endpoints on the provider's server.
pub(crate) async fn mount(server: &MockServer, keys: &IssuerKeys, logins: &Logins) {
    Mock::given(path(AUTHORIZE_PATH))
        .respond_with(Authorize {
            keys: keys.clone(),
            logins: logins.clone(),
        })
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(LOGOUT_PATH))
        .respond_with(Logout {
            keys: keys.clone(),
            logins: logins.clone(),
        })
        .mount(server)
        .await;
}

struct Authorize {
    keys: IssuerKeys,
    logins: Logins,
}

impl wiremock::Respond for Authorize {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        self.logins.authorize(&self.keys, request)
    }
}

struct Logout {
    keys: IssuerKeys,
    logins: Logins,
}

impl wiremock::Respond for Logout {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        self.logins.logout(&self.keys, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s256_challenge_is_rfc_7636s_example() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn loopback_redirects_match_on_any_port_and_others_exactly() {
        let page = "http://127.0.0.1:8080/";
        assert!(redirect_matches(page, "http://127.0.0.1:8080/"));
        assert!(redirect_matches(page, "http://127.0.0.1:41234/"));
        assert!(!redirect_matches(page, "http://127.0.0.1:41234/other"));
        assert!(!redirect_matches(page, "http://localhost:8080/"));
        assert!(!redirect_matches(page, "http://127.0.0.1:8080/#x"));
        assert!(!redirect_matches(page, "http://evil.example/"));
        let real = "https://cash.example.com/";
        assert!(redirect_matches(real, "https://cash.example.com/"));
        assert!(!redirect_matches(real, "https://cash.example.com:444/"));
    }
}
