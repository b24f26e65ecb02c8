//! The OpenAPI document, generated from the handlers and types, served at `/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
