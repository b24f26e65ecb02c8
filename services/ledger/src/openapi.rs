//! The OpenAPI document, generated from the handlers and types, served at `/openapi.json`.

use cashflow_platform::http::BearerAuth;
use utoipa::OpenApi;

use crate::entries::Entry;
use crate::routes::{EntryPage, RecordEntryRequest, ReversalRequest};

/// The ledger's API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Ledger API", description = "Record, reverse and list merchants' cash entries; digests and replays for the consolidation's reconciler (internal, service tokens with ledger:reconcile)"),
    paths(
        crate::routes::entries_api::record,
        crate::routes::entries_api::reverse,
        crate::routes::entries_api::get_one,
        crate::routes::entries_api::list,
        crate::routes::admin::digests,
        crate::routes::admin::replay
    ),
    components(schemas(
        Entry,
        EntryPage,
        RecordEntryRequest,
        ReversalRequest,
        crate::routes::admin::ReplayRequest,
        crate::routes::admin::DigestPageDoc,
        crate::routes::admin::DayDigestDoc,
        crate::routes::admin::ReplayOutcomeDoc,
        cashflow_platform::problem::Problem,
        cashflow_platform::problem::FieldError
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;
