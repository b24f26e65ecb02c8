//! The users' login of the emulated provider (Authorization Code with PKCE, refresh, logout), as
//! the cash-flow page uses it: its access tokens pass the services' own verifier with the
//! merchants and scopes the user signed in with.

use std::collections::HashMap;
use std::time::Duration;

use cashflow_platform::auth::{AuthConfig, JwtVerifier};
use harness::login::pkce_challenge;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client")
}

/// The query of a `303`'s `Location`.
fn location_query(response: &reqwest::Response) -> (String, HashMap<String, String>) {
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a Location")
        .to_string();
    let query = location
        .split_once('?')
        .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    (location, query)
}

struct Login<'a> {
    issuer: &'a str,
    client_id: String,
}

impl Login<'_> {
    fn authorize_url(&self, challenge: Option<&str>, redirect: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair(
                "scope",
                "openid entries:write entries:read balances:read admin",
            )
            .append_pair("state", "st-1")
            .append_pair("nonce", "n-1");
        if let Some(challenge) = challenge {
            query
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
        }
        format!("{}/oauth2/authorize?{}", self.issuer, query.finish())
    }

    /// Signs in through the form; the code it gives.
    async fn code(&self, verifier: &str, merchants: &str) -> anyhow::Result<String> {
        let url = self.authorize_url(Some(&pkce_challenge(verifier)), REDIRECT);
        let form = client().get(&url).send().await?;
        assert_eq!(form.status(), 200);
        assert!(form.text().await?.contains("<form method=\"post\""));
        let signed_in = client()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username=ana&merchants={merchants}"))
            .send()
            .await?;
        assert_eq!(signed_in.status(), 303);
        let (location, query) = location_query(&signed_in);
        assert!(location.starts_with(REDIRECT), "{location}");
        assert_eq!(query["state"], "st-1");
        assert_eq!(query["iss"], self.issuer);
        Ok(query["code"].clone())
    }

    async fn token(&self, form: &[(&str, &str)]) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.append_pair("client_id", &self.client_id);
        for (name, value) in form {
            body.append_pair(name, value);
        }
        let response = client()
            .post(format!("{}/oauth2/token", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.finish())
            .send()
            .await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    async fn exchange(
        &self,
        code: &str,
        verifier: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }
}

#[tokio::test]
async fn a_user_signs_in_with_pkce_and_gets_tokens_the_services_accept() -> anyhow::Result<()> {
    let stack = harness::shared().await?;
    let identity = stack.identity();
    let client_id = format!("page-{}", uuid::Uuid::new_v4().simple());
    identity.register_public_client(&client_id, &[REDIRECT], Duration::from_secs(120));
    let login = Login {
        issuer: identity.issuer(),
        client_id,
    };
    let verifier = "a-verifier-of-at-least-forty-three-characters-0123456789";

    // A code is bound to its PKCE challenge, and used once.
    let code = login.code(verifier, "m7,m8").await?;
    let (status, body) = login
        .exchange(&code, "another-verifier-of-forty-three-characters-000")
        .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let code = login.code(verifier, "m7,m8").await?;
    let (status, tokens) = login.exchange(&code, verifier).await?;
    assert_eq!(status, 200, "{tokens}");
    let (status, _) = login.exchange(&code, verifier).await?;
    assert_eq!(status, 400, "a code is used once");

    // The services' verifier accepts the access token: the user, the merchants, user scopes only.
    let verifier_of_services = JwtVerifier::new(AuthConfig {
        jwks_uri: None,
        ..identity.auth_config()
    });
    let principal = verifier_of_services
        .verify(tokens["access_token"].as_str().expect("an access token"))
        .await?;
    assert_eq!(principal.subject, "ana");
    assert_eq!(principal.merchants, ["m7", "m8"]);
    assert_eq!(
        principal.scopes,
        ["entries:write", "entries:read", "balances:read"],
        "admin is never granted by signing in"
    );
    assert_eq!(tokens["expires_in"], 120);
    assert!(
        tokens["id_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );

    // Refresh tokens rotate; one used twice ends the session.
    let first = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    let (status, refreshed) = login.refresh(&first).await?;
    assert_eq!(status, 200, "{refreshed}");
    verifier_of_services
        .verify(refreshed["access_token"].as_str().expect("an access token"))
        .await?;
    let second = refreshed["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    assert_ne!(first, second);
    assert_eq!(login.refresh(&first).await?.0, 400, "a used refresh token");
    assert_eq!(
        login.refresh(&second).await?.0,
        400,
        "its session was revoked"
    );

    // Logout ends the session and sends the browser back.
    let code = login.code(verifier, "m7").await?;
    let (_, tokens) = login.exchange(&code, verifier).await?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair(
            "id_token_hint",
            tokens["id_token"].as_str().expect("an ID token"),
        )
        .append_pair("post_logout_redirect_uri", REDIRECT)
        .append_pair("state", "bye");
    let logout = client()
        .get(format!(
            "{}/oauth2/logout?{}",
            identity.issuer(),
            query.finish()
        ))
        .send()
        .await?;
    assert_eq!(logout.status(), 303);
    assert_eq!(location_query(&logout).0, format!("{REDIRECT}?state=bye"));
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token");
    assert_eq!(login.refresh(refresh).await?.0, 400, "signed out");
    assert!(identity.login_counts().codes_exchanged >= 2);
    Ok(())
}

#[tokio::test]
async fn sign_in_requests_without_pkce_or_a_registered_redirect_are_refused() -> anyhow::Result<()>
{
    let stack = harness::shared().await?;
    let identity = stack.identity();
    let client_id = format!("page-{}", uuid::Uuid::new_v4().simple());
    identity.register_public_client(&client_id, &[REDIRECT], Duration::from_secs(60));
    let login = Login {
        issuer: identity.issuer(),
        client_id,
    };
    // No PKCE: the error goes back to the client.
    let answer = client()
        .get(login.authorize_url(None, REDIRECT))
        .send()
        .await?;
    assert_eq!(answer.status(), 303);
    assert_eq!(location_query(&answer).1["error"], "invalid_request");
    // A redirect URI nobody registered: nothing is sent there.
    let challenge = pkce_challenge("v".repeat(43).as_str());
    let answer = client()
        .get(login.authorize_url(Some(&challenge), "http://attacker.example/cb"))
        .send()
        .await?;
    assert_eq!(answer.status(), 400);
    assert!(answer.headers().get("location").is_none());
    // A loopback redirect on another port is the same registration (RFC 8252 7.3).
    let answer = client()
        .get(login.authorize_url(Some(&challenge), "http://127.0.0.1:41999/callback"))
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    Ok(())
}
