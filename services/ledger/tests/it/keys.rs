//! The verifier's key lifecycle against an identity provider that rotates keys and goes down:
//! a new key is accepted at once, a retired key is refused within the refresh interval (or the
//! provider's max-age), and while the provider is down the last good keys keep working.

use std::time::{Duration, Instant};

use cashflow_platform::auth::{AuthConfig, KeyPolicy};
use harness::RotatingIdentity;

use crate::helpers::{TestApp, credit};

fn auth(identity: &RotatingIdentity, keys: KeyPolicy) -> AuthConfig {
    AuthConfig {
        keys,
        ..identity.auth_config()
    }
}

async fn token(keys: &harness::IssuerKeys) -> String {
    keys.token()
        .merchant("m1")
        .scopes(["entries:write", "entries:read"])
        .mint()
        .expect("token")
}

async fn post(app: &TestApp, token: &str) -> u16 {
    app.http
        .post(format!("{}/v1/merchants/m1/entries", app.address))
        .bearer_auth(token)
        .json(&credit("1.00"))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

async fn retired_key_is_refused_within(
    identity: RotatingIdentity,
    keys: KeyPolicy,
    bound: Duration,
) {
    let app = TestApp::spawn_with(|config| config.auth = auth(&identity, keys)).await;
    let old = identity.signing();
    let old_token = token(&old).await;
    assert_eq!(post(&app, &old_token).await, 201);

    let new = identity.rotate().await.expect("rotate");
    let new_token = token(&new).await;
    assert_eq!(
        post(&app, &new_token).await,
        201,
        "a new kid is fetched at once"
    );
    assert_eq!(
        post(&app, &old_token).await,
        201,
        "the old key is still published"
    );

    identity.retire(&old.kid).await.expect("retire");
    let retired = Instant::now();
    harness::eventually(bound, "the retired key refused", || async {
        (post(&app, &old_token).await == 401).then_some(())
    })
    .await;
    eprintln!(
        "retired key refused {:?} after retirement",
        retired.elapsed()
    );
    assert_eq!(post(&app, &new_token).await, 201, "the new key still works");
}

#[tokio::test]
async fn a_retired_key_is_refused_within_the_refresh_interval_and_a_new_key_accepted() {
    let identity = RotatingIdentity::start(None).await.expect("identity");
    let keys = KeyPolicy {
        refresh_interval: Duration::from_secs(1),
        min_refetch_interval: Duration::from_millis(200),
        ..KeyPolicy::default()
    };
    retired_key_is_refused_within(identity, keys, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn the_providers_max_age_shortens_the_refresh() {
    let identity = RotatingIdentity::start(Some(Duration::from_secs(1)))
        .await
        .expect("identity");
    // The configured interval alone would trust the retired key for five minutes.
    let keys = KeyPolicy {
        min_refetch_interval: Duration::from_millis(200),
        ..KeyPolicy::default()
    };
    retired_key_is_refused_within(identity, keys, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn while_the_provider_is_down_the_last_good_keys_stay_in_use() {
    let identity = RotatingIdentity::start(None).await.expect("identity");
    let keys = KeyPolicy {
        refresh_interval: Duration::from_millis(300),
        min_refetch_interval: Duration::from_millis(100),
        ..KeyPolicy::default()
    };
    let app = TestApp::spawn_with(|config| config.auth = auth(&identity, keys)).await;
    let good = token(&identity.signing()).await;
    assert_eq!(post(&app, &good).await, 201);

    identity.set_down(true).await.expect("down");
    let until = Instant::now() + Duration::from_secs(2);
    let mut posts = 0;
    while Instant::now() < until {
        assert_eq!(
            post(&app, &good).await,
            201,
            "known keys outlive the provider"
        );
        posts += 1;
    }
    assert!(
        identity.jwks_requests().await >= 1,
        "refreshes were attempted while down"
    );
    // A kid it never saw is the caller's problem, not an outage.
    let unknown = identity
        .signing()
        .token()
        .merchant("m1")
        .scope("entries:write")
        .flaw(harness::TokenFlaw::UnknownKid)
        .mint()
        .expect("token");
    assert_eq!(post(&app, &unknown).await, 401);
    identity.set_down(false).await.expect("up");
    assert_eq!(post(&app, &good).await, 201);
    eprintln!("{posts} POSTs accepted while the identity provider was down");
}
