//! The OpenAPI documents as the contract. What every route of both services shares is added
//! here once, after utoipa has generated a document from the handlers: problem responses as
//! `application/problem+json` for every status the edge can answer, `Retry-After` where a client
//! should wait, the shapes of the path parameters both services take, and the bearer scheme
//! with its scopes. Each service then states what only it knows (enums, patterns, formats)
//! with [`patch`], and may rebuild parts per request ([`openapi_route`]) where what it accepts
//! depends on the configuration and the day (the ledger's booking window).

use std::sync::Arc;

use axum::routing::{MethodRouter, get};
use serde_json::{Value, json};

use crate::edge::ApiError;

/// Problem statuses and why a route answers them; each operation gets those that apply.
const AUTH: [(u16, &str); 2] = [
    (401, "Missing, expired or invalid bearer token"),
    (403, "The token does not grant this merchant or scope"),
];
const ALWAYS: [(u16, &str); 2] = [
    (
        429,
        "Throttled (by the gateway or the service): retry after Retry-After seconds",
    ),
    (
        503,
        "A dependency is down or too slow: retry after Retry-After seconds",
    ),
];
const WITH_BODY: [(u16, &str); 3] = [
    (400, "The body is not valid JSON"),
    (413, "The body is larger than the service accepts"),
    (415, "The body is not application/json"),
];
const WITH_PARAMETERS: (u16, &str) = (422, "A parameter or field is invalid (each one is named)");
const WITH_ID: (u16, &str) = (404, "No such resource for this merchant");

/// A merchant id: what `cashflow_contracts::MerchantId` accepts.
pub const MERCHANT_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// Text a client may send: no control characters other than tab, line feed and carriage return
/// (what the services' text validator accepts).
pub const TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";

/// The generated document with what every route shares. `scopes` describes the bearer scopes.
pub fn contract(document: utoipa::openapi::OpenApi, scopes: &[(&str, &str)]) -> Value {
    let mut doc = serde_json::to_value(document).unwrap_or_else(|_| json!({}));
    let scope_list = scopes
        .iter()
        .map(|(scope, what)| format!("`{scope}`: {what}"))
        .collect::<Vec<_>>()
        .join("; ");
    doc["components"]["securitySchemes"]["bearer"] = json!({
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": format!(
            "RS256 JWT from the identity provider, verified against its JWKS (issuer, audience, \
             expiry). It names the merchants it may act for and its scopes: {scope_list}."
        ),
    });
    doc["components"]["headers"]["Retry-After"] = json!({
        "description": "Seconds to wait before retrying",
        "required": true,
        "schema": {"type": "integer", "minimum": 0},
    });
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    for (path, operations) in paths.iter_mut() {
        let Some(operations) = operations.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            finish_operation(path, operation);
        }
    }
    doc
}

fn finish_operation(path: &str, operation: &mut Value) {
    let has_body = operation.get("requestBody").is_some();
    let has_parameters = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let secured = operation.get("security").is_some();
    let mut statuses: Vec<(u16, &str)> = ALWAYS.to_vec();
    if secured {
        statuses.extend(AUTH);
    }
    if has_body {
        statuses.extend(WITH_BODY);
    }
    if has_parameters || has_body {
        statuses.push(WITH_PARAMETERS);
    }
    if path.contains("{id}") || path.contains("{date}") {
        statuses.push(WITH_ID);
    }
    let responses = &mut operation["responses"];
    for (status, why) in statuses {
        let entry = &mut responses[status.to_string()];
        if entry.is_null() {
            *entry = json!({"description": why});
        }
    }
    // Every problem is problem+json, and a client that must wait is told how long.
    if let Some(responses) = responses.as_object_mut() {
        for (status, response) in responses.iter_mut() {
            let code: u16 = status.parse().unwrap_or_default();
            if code < 400 {
                continue;
            }
            response["content"] = json!({
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            });
            if code == 429 || code == 503 {
                response["headers"]["Retry-After"] =
                    json!({"$ref": "#/components/headers/Retry-After"});
            }
        }
    }
    // Path parameters both services share.
    if let Some(parameters) = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    {
        for parameter in parameters {
            match (parameter["in"].as_str(), parameter["name"].as_str()) {
                (Some("path"), Some("merchant")) => {
                    parameter["schema"] = json!({"type": "string", "pattern": MERCHANT_PATTERN});
                }
                (Some("path"), Some("id")) => {
                    parameter["schema"] = json!({"type": "string", "format": "uuid"});
                }
                _ => {}
            }
        }
    }
}

/// Merges `fields` into the object at `pointer` (a JSON pointer), creating it if needed.
pub fn patch(doc: &mut Value, pointer: &str, fields: Value) {
    let mut target = doc;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        target = match target {
            Value::Array(items) => match token.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            {
                Some(item) => item,
                None => return,
            },
            other => &mut other[token.as_str()],
        };
    }
    if let (Some(target), Value::Object(fields)) = (target.as_object_mut(), fields.clone()) {
        target.extend(fields);
    } else {
        *target = fields;
    }
}

/// Merges `fields` into the schema of the parameter `name` of `method path`.
pub fn patch_parameter(doc: &mut Value, path: &str, method: &str, name: &str, fields: Value) {
    let Some(parameters) = doc["paths"][path][method]["parameters"].as_array_mut() else {
        return;
    };
    for parameter in parameters {
        if parameter["name"] == name {
            if let (Some(schema), Value::Object(fields)) =
                (parameter["schema"].as_object_mut(), fields.clone())
            {
                schema.extend(fields);
            }
            return;
        }
    }
}

/// `GET` route serving the document `build` makes, per request (cheap: a few kB of JSON), so a
/// document that depends on the day stays exact.
pub fn openapi_route(
    build: impl Fn() -> Result<Value, ApiError> + Send + Sync + 'static,
) -> MethodRouter {
    let build = Arc::new(build);
    get(move || {
        let build = Arc::clone(&build);
        async move { build().map(axum::Json) }
    })
}
