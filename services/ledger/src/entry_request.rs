//! The body of `POST /v1/merchants/{merchant}/entries`: one type that serde deserialises, that
//! utoipa describes in the OpenAPI document, and that [`RecordEntryRequest::check`] turns into
//! the [`NewEntry`] to record, against the ledger's rules.
//!
//! A client learns every problem of its body from one answer, each naming its field (422). So
//! no field fails deserialisation: each is a [`Field`], which keeps what was sent (nothing, a
//! value of its type, or why it is not one), and fields an entry does not have are collected
//! instead of refused. `check` then reports them all, in field order, unknown fields last.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use cashflow_contracts::{Amount, Currency, EntryKind, MerchantId, business_date};
use cashflow_platform::edge::ApiError;
use cashflow_platform::problem::FieldError;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use time::Date;

use crate::config::EntryRules;
use crate::entries::{MAX_CATEGORY, MAX_DESCRIPTION, NewEntry, check_text};

/// Body of `POST .../entries`. A 422 names every field that is wrong, all at once.
// Every field defaults to `Field::Absent`, so that a missing required field is a problem
// `check` names rather than a failure of the whole body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RecordEntryRequest {
    /// `credit` or `debit`.
    #[serde(default)]
    #[schema(value_type = String, required, example = "credit")]
    kind: Field<EntryKind>,
    /// Decimal string > 0 with at most 2 decimals.
    #[serde(default)]
    #[schema(value_type = String, required, example = "100.10")]
    amount: Field<Amount>,
    /// The merchant's currency (BRL by default).
    #[serde(default)]
    #[schema(value_type = String, required, example = "BRL")]
    currency: Field<Currency>,
    /// `YYYY-MM-DD`; default today in the merchant's zone; not in the future nor before the
    /// backdating window.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "2026-11-24")]
    business_date: Field<BusinessDate>,
    /// Up to 200 characters.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    description: Field<String>,
    /// Up to 64 characters.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    category: Field<String>,
    /// Fields an entry does not have, each refused by name.
    #[serde(flatten)]
    unknown: BTreeMap<String, Value>,
}

/// One field of a request as sent. Deserialising it never fails: what is wrong with it waits
/// for [`RecordEntryRequest::check`], which names the field.
#[derive(Debug, Default)]
enum Field<T> {
    /// Absent, or `null`.
    #[default]
    Absent,
    /// A string that is a `T`.
    Valid(T),
    /// Anything else: why it is not a `T`.
    Invalid(String),
}

/// Every field of an entry is a JSON string (or null) that parses as its type.
impl<'de, T> Deserialize<'de> for Field<T>
where
    T: FromStr,
    T::Err: Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::Null => Self::Absent,
            Value::String(text) => match text.parse() {
                Ok(value) => Self::Valid(value),
                Err(e) => Self::Invalid(e.to_string()),
            },
            other => Self::Invalid(format!("must be a string, not {}", type_name(&other))),
        })
    }
}

impl<T> Field<T> {
    /// The value of a field that must be given, or its problem added to `errors`.
    fn required(self, name: &str, errors: &mut Vec<FieldError>) -> Option<T> {
        match self {
            Self::Valid(value) => Some(value),
            Self::Absent => {
                errors.push(problem(name, "is required"));
                None
            }
            Self::Invalid(message) => {
                errors.push(problem(name, message));
                None
            }
        }
    }
}

impl Field<String> {
    /// A free-text field, checked by the one rule for text ([`check_text`]): `None` when absent
    /// or blank, or when wrong (its problem added to `errors`).
    fn text(self, name: &str, max: usize, errors: &mut Vec<FieldError>) -> Option<String> {
        match self {
            Self::Absent => None,
            Self::Valid(text) => check_text(name, &text, max)
                .map_err(|e| errors.push(e))
                .ok()
                .flatten(),
            Self::Invalid(message) => {
                errors.push(problem(name, message));
                None
            }
        }
    }
}

/// A business date as the API writes it, `YYYY-MM-DD`.
#[derive(Debug)]
struct BusinessDate(Date);

impl FromStr for BusinessDate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        business_date::parse(text).map(Self)
    }
}

impl RecordEntryRequest {
    /// The entry `merchant` asks to record, checked against `rules` on `today` (in the
    /// merchants' zone), or a 422 naming every field that is wrong. Writes nothing.
    pub fn check(
        self,
        merchant: MerchantId,
        rules: &EntryRules,
        today: Date,
    ) -> Result<NewEntry, ApiError> {
        let mut errors = Vec::new();
        let kind = self.kind.required("kind", &mut errors);
        let amount = self.amount.required("amount", &mut errors);
        let currency = self
            .currency
            .required("currency", &mut errors)
            .filter(|currency| {
                let kept = *currency == rules.currency;
                if !kept {
                    errors.push(problem(
                        "currency",
                        format!(
                            "merchants keep their books in {}, not {currency}",
                            rules.currency
                        ),
                    ));
                }
                kept
            });
        let business_date = match self.business_date {
            Field::Absent => Some(today),
            Field::Valid(BusinessDate(date)) => within_window(date, rules, today)
                .map_err(|e| errors.push(e))
                .ok(),
            Field::Invalid(message) => {
                errors.push(problem("business_date", message));
                None
            }
        };
        let description = self
            .description
            .text("description", MAX_DESCRIPTION, &mut errors);
        let category = self.category.text("category", MAX_CATEGORY, &mut errors);
        for unknown in self.unknown.keys() {
            errors.push(problem(unknown, "is not a field of an entry"));
        }
        match (kind, amount, currency, business_date) {
            (Some(kind), Some(amount), Some(currency), Some(business_date))
                if errors.is_empty() =>
            {
                Ok(NewEntry {
                    merchant,
                    kind,
                    amount,
                    currency,
                    business_date,
                    description,
                    category,
                })
            }
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// A business date is neither in the future nor further back than the backdating window.
fn within_window(date: Date, rules: &EntryRules, today: Date) -> Result<Date, FieldError> {
    let text = business_date::format(date);
    if date > today {
        return Err(problem(
            "business_date",
            format!(
                "{text} is in the future (today is {})",
                business_date::format(today)
            ),
        ));
    }
    if (today - date).whole_days() > i64::from(rules.backdate_window_days) {
        return Err(problem(
            "business_date",
            format!(
                "{text} is more than {} days back",
                rules.backdate_window_days
            ),
        ));
    }
    Ok(date)
}

fn problem(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 24);

    fn check(body: &str) -> Result<NewEntry, ApiError> {
        let merchant: MerchantId = "m1".parse().expect("merchant");
        cashflow_platform::edge::json_object::<RecordEntryRequest>(body.as_bytes())?.check(
            merchant,
            &EntryRules::default(),
            TODAY,
        )
    }

    fn problems(body: &str) -> Vec<(String, String)> {
        match check(body) {
            Err(ApiError::Validation(errors)) => {
                errors.into_iter().map(|e| (e.field, e.message)).collect()
            }
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_valid_body_is_the_entry_with_defaults_filled_in() {
        let entry = check(
            r#"{"kind": "debit", "amount": "0.50", "currency": "BRL",
            "description": "  fee  ", "category": null}"#,
        )
        .expect("valid");
        assert_eq!(entry.kind, EntryKind::Debit);
        assert_eq!(entry.amount.minor(), 50);
        assert_eq!(entry.business_date, TODAY, "today by default");
        assert_eq!(entry.description.as_deref(), Some("fee"));
        assert_eq!(entry.category, None);
    }

    #[test]
    fn every_wrong_field_is_named_at_once_in_field_order_unknown_ones_last() {
        let found = problems(
            r#"{"zeta": 1, "category": 7, "business_date": "2026-11-25", "currency": "USD",
                "amount": null, "description": "x\u0000", "alpha": true, "kind": ["credit"]}"#,
        );
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "kind",
                "amount",
                "currency",
                "business_date",
                "description",
                "category",
                "alpha",
                "zeta"
            ],
            "{found:?}"
        );
        let message = |field: &str| {
            found
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, m)| m.as_str())
                .unwrap_or_default()
        };
        assert_eq!(message("kind"), "must be a string, not an array");
        assert_eq!(message("amount"), "is required", "null is absent");
        assert_eq!(
            message("currency"),
            "merchants keep their books in BRL, not USD"
        );
        assert_eq!(
            message("business_date"),
            "2026-11-25 is in the future (today is 2026-11-24)"
        );
        assert_eq!(message("category"), "must be a string, not a number");
        assert_eq!(message("zeta"), "is not a field of an entry");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_as_a_whole() {
        assert_eq!(
            problems("[1, 2]"),
            [("body".into(), "must be a JSON object".into())]
        );
        assert!(matches!(check("{"), Err(ApiError::MalformedJson(_))));
    }
}
