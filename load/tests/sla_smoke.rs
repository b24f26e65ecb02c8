//! A 10-second SLA smoke inside `make test`: balance and report reads at 50 requests/s against
//! the platform on the harness's real dependencies. It asserts only the SLA bound (at most 5 %
//! failures); speed is measured by `make load`, not asserted here.

#[tokio::test]
async fn sla_smoke_holds_the_failure_bound() -> anyhow::Result<()> {
    let target = load::kit::target::Target::start_local(10, 3).await?;
    target.seed(2).await?;
    let (run, figures) = load::scenarios::sla::sla(&target, 50, 10, None).await?;
    load::kit::report::publish("sla-smoke", &figures)?;
    target.shutdown().await;
    assert!(
        run.requests >= 300,
        "the smoke made {} requests in 10 s at 50/s",
        run.requests
    );
    assert!(
        run.failure_ratio() <= 0.05,
        "failure ratio {:.3}",
        run.failure_ratio()
    );
    Ok(())
}
