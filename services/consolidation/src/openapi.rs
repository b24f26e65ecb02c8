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

/// The document as served: what utoipa generates, the shared contract, and the formats and
/// bounds of the consolidation's parameters.
pub fn document() -> serde_json::Value {
    use cashflow_platform::openapi::{contract, patch_parameter};
    use serde_json::json;
    let mut doc = contract(
        ApiDoc::openapi(),
        &[
            ("balances:read", "read daily balances and reports"),
            ("admin", "inspect and redrive the dead-letter queue"),
        ],
    );
    let day = "/v1/merchants/{merchant}/balances/{date}";
    patch_parameter(&mut doc, day, "get", "date", json!({"format": "date"}));
    let report = "/v1/merchants/{merchant}/balances";
    for bound in ["from", "to"] {
        patch_parameter(&mut doc, report, "get", bound, json!({"format": "date"}));
    }
    patch_parameter(
        &mut doc,
        report,
        "get",
        "format",
        json!({"enum": ["json", "csv"]}),
    );
    // Two representations of one 200 (utoipa keeps only the last of two 200 entries).
    doc["paths"][report]["get"]["responses"]["200"] = json!({
        "description": "The report: JSON by default, CSV (one line per day) with Accept: text/csv or format=csv",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Report"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    });
    patch_parameter(
        &mut doc,
        "/v1/admin/dlq",
        "get",
        "limit",
        json!({"minimum": 1, "maximum": 1000}),
    );
    let reconcile = "/components/schemas/ReconcileRequest";
    cashflow_platform::openapi::patch(&mut doc, reconcile, json!({"additionalProperties": false}));
    for bound in ["from", "to"] {
        cashflow_platform::openapi::patch(
            &mut doc,
            &format!("{reconcile}/properties/{bound}"),
            json!({"type": "string", "format": "date"}),
        );
    }
    cashflow_platform::openapi::patch(
        &mut doc,
        &format!("{reconcile}/properties/merchant_id"),
        json!({
            "type": ["string", "null"],
            "pattern": cashflow_platform::openapi::MERCHANT_PATTERN,
        }),
    );
    doc
}
