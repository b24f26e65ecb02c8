//! The OpenAPI document, generated from the handlers and types, served at `/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The consolidation's API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "Consolidation API", description = "Daily balances and reports; DLQ tooling"),
    paths(
        crate::routes::balances::day,
        crate::routes::balances::range,
        crate::routes::admin::list,
        crate::routes::admin::redrive
    ),
    components(schemas(
        crate::balances::DayBalance,
        crate::balances::Report,
        crate::dlq::DeadLetter,
        crate::routes::admin::DlqListing,
        crate::routes::admin::RedriveRequest,
        crate::routes::admin::RedriveResult,
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
