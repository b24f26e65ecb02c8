//! Step definitions of `resilience.feature`.

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
use crate::world::*;

#[when("the consolidation service stops")]
pub(crate) async fn consolidation_stops(w: &mut Platform) {
    w.system_mut().stop_consolidation().await.expect("stopped");
}

#[when("the consolidation service starts again")]
pub(crate) async fn consolidation_starts(w: &mut Platform) {
    w.system_mut().start_consolidation().await.expect("started");
}

#[when("LocalStack is paused")]
pub(crate) async fn localstack_paused(w: &mut Platform) {
    w.inject(Side::Ledger, Dependency::Sqs, Fault::Pause).await;
}

#[when("LocalStack resumes")]
pub(crate) async fn localstack_resumes(w: &mut Platform) {
    w.inject(Side::Ledger, Dependency::Sqs, Fault::Resume).await;
}

#[then(expr = "the ledger's outbox holds {int} events")]
pub(crate) async fn outbox_holds(w: &mut Platform, count: i64) {
    let pool = w.system().ledger_scope.pg_pool().await.expect("pool");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, count);
}

#[when("Redis is killed")]
pub(crate) async fn redis_killed(w: &mut Platform) {
    w.inject(Side::Consolidation, Dependency::Redis, Fault::Kill)
        .await;
}

#[when("Redis restarts")]
pub(crate) async fn redis_restarts(w: &mut Platform) {
    w.inject(Side::Consolidation, Dependency::Redis, Fault::Restart)
        .await;
}
