//! The OpenAPI document, generated from the handlers and types, served at `/openapi.json`.

use cashflow_platform::http::BearerAuth;
use cashflow_platform::openapi::{TEXT_PATTERN, contract, patch, patch_parameter};
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::config::EntryRules;
use crate::entries::{Entry, MAX_CATEGORY, MAX_DESCRIPTION};
use crate::entry_request::RecordEntryRequest;
use crate::routes::{EntryPage, ReversalRequest};
use crate::zone::ZoneError;

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

/// A decimal string > 0 with at most two decimals and at most `cashflow_contracts::MAX_MINOR`
/// minor units (100,000,000,000.00), leading zeros allowed: exactly what `Amount` parses.
const AMOUNT_PATTERN: &str = "^0*(?:[1-9][0-9]{0,10}(?:\\.[0-9]{1,2})?|100000000000(?:\\.0{1,2})?)$|^0+\\.(?:0[1-9]|[1-9][0-9]?)$";
/// An `Idempotency-Key`: 1 to 255 visible ASCII characters (inner spaces and tabs allowed;
/// outer ones are not part of a header value).
const IDEMPOTENCY_KEY_PATTERN: &str = "^[\\x21-\\x7E](?:[\\t\\x20-\\x7E]{0,253}[\\x21-\\x7E])?$";

/// The public listener's document: the entry routes (what the gateway exposes).
pub fn public_document(rules: &EntryRules) -> Result<Value, ZoneError> {
    Ok(only_paths(document(rules)?, |path| {
        !path.starts_with("/internal/")
    }))
}

/// The internal listener's document: digests and replays for the consolidation's reconciler.
pub fn internal_document(rules: &EntryRules) -> Result<Value, ZoneError> {
    Ok(only_paths(document(rules)?, |path| {
        path.starts_with("/internal/")
    }))
}

fn only_paths(mut doc: Value, keep: impl Fn(&str) -> bool) -> Value {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        paths.retain(|path, _| keep(path));
    }
    doc
}

/// Both listeners' routes: what utoipa generates, the shared contract, and what depends on this
/// ledger's rules: its currency and the business dates it books today (the backdating window up
/// to today in the merchants' zone), so that every request the document allows is accepted.
pub fn document(rules: &EntryRules) -> Result<Value, ZoneError> {
    let mut doc = contract(
        ApiDoc::openapi(),
        &[
            ("entries:write", "record and reverse entries"),
            ("entries:read", "read and list entries"),
            (
                "ledger:reconcile",
                "digests and replays (client-credentials tokens of the consolidation only)",
            ),
        ],
    );
    let today = crate::entries::today(rules)?;
    let mut dates: Vec<Value> = (0..=i64::from(rules.backdate_window_days))
        .map(|back| {
            json!(cashflow_contracts::business_date::format(
                today - time::Duration::days(back)
            ))
        })
        .collect();
    dates.push(Value::Null);
    let text =
        |max: usize| json!({"type": ["string", "null"], "maxLength": max, "pattern": TEXT_PATTERN});
    let request = "/components/schemas/RecordEntryRequest";
    patch(&mut doc, request, json!({"additionalProperties": false}));
    patch(
        &mut doc,
        &format!("{request}/properties/kind"),
        json!({"type": "string", "enum": ["credit", "debit"]}),
    );
    patch(
        &mut doc,
        &format!("{request}/properties/amount"),
        json!({"type": "string", "pattern": AMOUNT_PATTERN}),
    );
    patch(
        &mut doc,
        &format!("{request}/properties/currency"),
        json!({"type": "string", "enum": [rules.currency.to_string()]}),
    );
    patch(
        &mut doc,
        &format!("{request}/properties/business_date"),
        json!({
            "type": ["string", "null"],
            "format": "date",
            "enum": dates,
            "example": cashflow_contracts::business_date::format(today),
        }),
    );
    patch(
        &mut doc,
        &format!("{request}/properties/description"),
        text(MAX_DESCRIPTION),
    );
    patch(
        &mut doc,
        &format!("{request}/properties/category"),
        text(MAX_CATEGORY),
    );
    let reversal = "/components/schemas/ReversalRequest";
    patch(&mut doc, reversal, json!({"additionalProperties": false}));
    patch(
        &mut doc,
        &format!("{reversal}/properties/description"),
        text(MAX_DESCRIPTION),
    );

    let entries = "/v1/merchants/{merchant}/entries";
    patch_parameter(&mut doc, entries, "get", "date", json!({"format": "date"}));
    patch_parameter(
        &mut doc,
        entries,
        "get",
        "limit",
        json!({"minimum": 1, "maximum": 200}),
    );
    for path in [entries, "/v1/merchants/{merchant}/entries/{id}/reversal"] {
        patch_parameter(
            &mut doc,
            path,
            "post",
            "Idempotency-Key",
            json!({"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}),
        );
    }
    Ok(doc)
}
