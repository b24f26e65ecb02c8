//! Step definitions shared by every feature: starting the platform, choosing the merchant.

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
use crate::world::*;

#[given("the platform is running")]
pub(crate) async fn platform_running(w: &mut Platform) {
    let shared = harness::shared().await.expect("shared stack");
    w.start(
        Placement {
            ledger: shared,
            consolidation: shared,
        },
        5,
    )
    .await;
}

#[given(expr = "the platform is running with maxReceiveCount {int}")]
pub(crate) async fn platform_running_with(w: &mut Platform, max_receive_count: u32) {
    let shared = harness::shared().await.expect("shared stack");
    w.start(
        Placement {
            ledger: shared,
            consolidation: shared,
        },
        max_receive_count,
    )
    .await;
}

#[given("the platform is running on a stack of its own")]
pub(crate) async fn platform_own_stack(w: &mut Platform) {
    let stack = w.own_stack().await;
    w.start(
        Placement {
            ledger: stack,
            consolidation: stack,
        },
        5,
    )
    .await;
}

#[given("the platform is running on stacks of its own, the ledger's database apart")]
pub(crate) async fn platform_two_stacks(w: &mut Platform) {
    let ledger = w.own_stack().await;
    let consolidation = w.own_stack().await;
    w.start(
        Placement {
            ledger,
            consolidation,
        },
        10,
    )
    .await;
}

#[given(
    "the platform is running on stacks of its own, the ledger's database apart, with an identity provider whose keys rotate"
)]
pub(crate) async fn platform_two_stacks_rotating(w: &mut Platform) {
    let ledger = w.own_stack().await;
    let consolidation = w.own_stack().await;
    w.start_rotating(
        Placement {
            ledger,
            consolidation,
        },
        10,
    )
    .await;
}

#[given(expr = "I am merchant {string}")]
pub(crate) async fn i_am(w: &mut Platform, merchant: String) {
    w.merchant = merchant;
}
