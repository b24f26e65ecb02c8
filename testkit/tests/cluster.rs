//! [`testkit::ClusterPlan`]: both services as their own processes behind the gateway, on a
//! test's scopes, as the load suite's fire and soak runs start them. An entry recorded through
//! the gateway reaches the consolidation's balance through the gateway: the two services share
//! the ledger scope's queue pair and trust the stack's identity provider.

use std::time::Duration;

use testkit::ClusterPlan;

#[tokio::test]
async fn an_entry_recorded_through_the_gateway_reaches_the_balance_through_it() -> anyhow::Result<()>
{
    // The services run as processes on this machine: an external backend may have no nginx.
    if std::env::var("HARNESS_BACKEND").is_ok_and(|b| b == "external") {
        return Ok(());
    }
    let stack = harness::shared().await?;
    let (ledger, consolidation) = (stack.scope().await?, stack.scope().await?);
    let cluster = ClusterPlan::new(&ledger, &consolidation, "testkit-cluster")
        .start(stack)
        .await?;
    let merchant = format!("m-plan-{}", &ledger.id);
    let token = stack
        .identity()
        .token()
        .merchant(&merchant)
        .scopes(["entries:write", "balances:read"])
        .mint()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let gateway = cluster.gateway_url().to_string();
    let recorded = http
        .post(format!("{gateway}/v1/merchants/{merchant}/entries"))
        .bearer_auth(&token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&serde_json::json!({"kind": "credit", "amount": "10.00", "currency": "BRL"}))
        .send()
        .await?;
    assert_eq!(recorded.status(), 201, "{}", recorded.text().await?);
    let entry: serde_json::Value = recorded.json().await?;
    let date = entry["business_date"].as_str().expect("a date").to_string();
    let day = harness::eventually(Duration::from_secs(60), "the entry in the balance", || {
        let (http, gateway, token, merchant, date) = (&http, &gateway, &token, &merchant, &date);
        async move {
            let day = testkit::books::consolidated_day(http, gateway, token, merchant, date)
                .await
                .ok()?;
            (day.entry_count == 1).then_some(day)
        }
    })
    .await;
    assert_eq!(day.credits_minor, 1000);
    cluster.shutdown().await;
    Ok(())
}
