//! Tokens from the emulated provider: good ones verify, every flaw is rejected by a correct
//! verifier (the one the services use).

use std::time::Duration;

use cashflow_platform::auth::{AuthConfig, AuthError, JwtVerifier};
use harness::TokenFlaw;

fn verifier(stack: &harness::Stack, jwks_uri: Option<String>) -> JwtVerifier {
    JwtVerifier::new(AuthConfig {
        jwks_uri,
        ..stack.identity().auth_config()
    })
}

#[tokio::test]
async fn a_good_token_verifies_against_the_discovered_jwks() -> anyhow::Result<()> {
    let stack = harness::shared().await?;
    let token = stack
        .identity()
        .token()
        .merchants(["m1", "m2"])
        .scopes(["entries:write", "balances:read"])
        .subject("alice")
        .mint()?;
    // No JWKS URL: found through the discovery document, as a real service would.
    let principal = verifier(stack, None).verify(&token).await?;
    assert_eq!(principal.subject, "alice");
    assert_eq!(principal.merchants, ["m1", "m2"]);
    assert!(principal.has_scope("entries:write") && principal.has_scope("balances:read"));
    assert!(!principal.has_scope("admin"));
    Ok(())
}

#[tokio::test]
async fn every_flawed_token_is_rejected() -> anyhow::Result<()> {
    let stack = harness::shared().await?;
    let verifier = verifier(stack, Some(stack.identity().jwks_uri()));
    for flaw in TokenFlaw::ALL {
        let token = stack
            .identity()
            .token()
            .merchant("m1")
            .scope("entries:write")
            .flaw(flaw)
            .mint()?;
        let result = verifier.verify(&token).await;
        assert!(result.is_err(), "{flaw:?} token was accepted: {result:?}");
        if let Err(AuthError::KeysUnavailable(e)) = result {
            panic!("{flaw:?} rejected for the wrong reason (keys unavailable: {e})");
        }
    }
    // The same verifier still accepts a good token: the rejections were about the tokens.
    let good = stack.identity().token().merchant("m1").mint()?;
    verifier.verify(&good).await?;
    Ok(())
}

async fn token_request(
    url: &str,
    client: &str,
    secret: &str,
    scope: Option<&str>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut body =
        format!("grant_type=client_credentials&client_id={client}&client_secret={secret}");
    if let Some(scope) = scope {
        body.push_str(&format!("&scope={}", scope.replace(':', "%3A")));
    }
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

#[tokio::test]
async fn the_token_endpoint_grants_client_credentials_to_registered_clients() -> anyhow::Result<()>
{
    let stack = harness::shared().await?;
    let identity = stack.identity();
    let discovery: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        identity.issuer()
    ))
    .await?
    .json()
    .await?;
    assert_eq!(
        discovery["token_endpoint"].as_str(),
        Some(identity.token_url().as_str())
    );

    let client =
        identity.register_client("svc-test", &["ledger:reconcile"], Duration::from_secs(120));
    let (status, body) =
        token_request(&client.token_url, "svc-test", &client.client_secret, None).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 120);
    let token = body["access_token"].as_str().expect("token");
    let principal = verifier(stack, None).verify(token).await?;
    assert_eq!(principal.subject, "svc-test");
    assert!(
        principal.merchants.is_empty(),
        "a service acts for no merchant"
    );
    assert!(principal.has_scope("ledger:reconcile"));

    let (status, body) = token_request(&client.token_url, "svc-test", "wrong", None).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = token_request(
        &client.token_url,
        "svc-test",
        &client.client_secret,
        Some("admin"),
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    Ok(())
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() -> anyhow::Result<()> {
    let stack = harness::shared().await?;
    let verifier = JwtVerifier::new(AuthConfig {
        leeway: Duration::ZERO,
        ..stack.identity().auth_config()
    });
    let token = stack
        .identity()
        .token()
        .merchant("m1")
        .ttl(Duration::from_secs(2))
        .mint()?;
    // Verified, then answered from the verifier's memory.
    verifier.verify(&token).await?;
    verifier.verify(&token).await?;
    harness::eventually(Duration::from_secs(10), "the token refused", || async {
        matches!(verifier.verify(&token).await, Err(AuthError::Invalid(_))).then_some(())
    })
    .await;
    Ok(())
}
