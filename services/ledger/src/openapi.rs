//! The OpenAPI document, generated from the handlers and types, served at `/openapi.json`.

use cashflow_platform::http::BearerAuth;
use utoipa::OpenApi;

use crate::entries::Entry;
use crate::routes::{EntryPage, RecordEntryRequest, ReversalRequest};

/// The ledger's API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Ledger API", description = "Record, reverse and list merchants' cash entries"),
    paths(
        crate::routes::entries_api::record,
        crate::routes::entries_api::reverse,
        crate::routes::entries_api::get_one,
        crate::routes::entries_api::list
    ),
    components(schemas(
        Entry,
        EntryPage,
        RecordEntryRequest,
        ReversalRequest,
        cashflow_platform::problem::Problem,
        cashflow_platform::problem::FieldError
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;
