//! Events that cross SQS between the ledger and the consolidation.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::{Currency, EntryKind, MerchantId};

/// `event_type` of [`EntryRecordedV1`].
pub const ENTRY_RECORDED: &str = "entry.recorded.v1";
/// SQS message attribute that names the event type.
pub const EVENT_TYPE_ATTRIBUTE: &str = "event_type";
/// SQS message attribute carrying the W3C trace context.
pub const TRACEPARENT_ATTRIBUTE: &str = "traceparent";

/// An entry was recorded in the ledger (a reversal is an entry too, naming the entry it undoes).
///
/// Consumers ignore fields they do not know: later additions to v1 are additive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecordedV1 {
    /// Always [`ENTRY_RECORDED`]; consumers check it against the message attribute.
    pub event_type: String,
    /// Unique per event; consumers deduplicate on it.
    pub event_id: Uuid,
    /// The entry.
    pub entry_id: Uuid,
    /// Whose books.
    pub merchant_id: MerchantId,
    /// Credit or debit.
    pub kind: EntryKind,
    /// Positive amount in minor units.
    pub amount_minor: i64,
    /// ISO currency.
    pub currency: Currency,
    /// The merchant's local day the entry belongs to.
    #[serde(with = "crate::business_date")]
    pub business_date: Date,
    /// When the ledger committed it.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// For a reversal, the entry it reverses.
    pub reverses_entry_id: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn entry_recorded_v1_wire_format() {
        let event = EntryRecordedV1 {
            event_type: ENTRY_RECORDED.into(),
            event_id: Uuid::from_u128(1),
            entry_id: Uuid::from_u128(2),
            merchant_id: "m1".parse().expect("valid"),
            kind: EntryKind::Credit,
            amount_minor: 10010,
            currency: Currency::BRL,
            business_date: date!(2026 - 11 - 24),
            recorded_at: datetime!(2026-11-24 13:05:10.123 UTC),
            reverses_entry_id: None,
        };
        insta::assert_json_snapshot!(event);
        let back: EntryRecordedV1 =
            serde_json::from_value(serde_json::to_value(&event).expect("json")).expect("parse");
        assert_eq!(back, event);
    }
}
