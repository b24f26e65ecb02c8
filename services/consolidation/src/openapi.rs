//! The OpenAPI document, generated from the handlers and types, served at `/openapi.json`.

use cashflow_platform::http::BearerAuth;
use utoipa::OpenApi;

/// The consolidation's API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Consolidation API", description = "Daily balances and reports; DLQ tooling; reconciliation with the ledger"),
    paths(
        crate::routes::balances::day,
        crate::routes::balances::range,
        crate::routes::admin::list,
        crate::routes::admin::redrive,
        crate::routes::admin::reconcile
    ),
    components(schemas(
        crate::balances::DayBalance,
        crate::balances::Report,
        crate::dlq::DeadLetter,
        crate::routes::admin::DlqListing,
        crate::routes::admin::RedriveRequest,
        crate::routes::admin::RedriveResult,
        crate::routes::admin::ReconcileRequest,
        crate::reconcile::ReconcileReport,
        crate::reconcile::Divergence,
        crate::reconcile::DayTotals,
        cashflow_platform::problem::Problem,
        cashflow_platform::problem::FieldError
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;
