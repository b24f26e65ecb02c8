//! Tokens from the emulated provider: good ones verify, every flaw is rejected by a correct
//! verifier (the one the services use).

use std::time::Duration;

use cashflow_platform::auth::{AuthConfig, AuthError, JwtVerifier};
use harness::TokenFlaw;

fn verifier(stack: &harness::Stack, jwks_uri: Option<String>) -> JwtVerifier {
    JwtVerifier::new(AuthConfig {
        issuer: stack.identity().issuer().to_string(),
        audience: stack.identity().audience().to_string(),
        jwks_uri,
        leeway: Duration::from_secs(30),
        keys: Default::default(),
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
