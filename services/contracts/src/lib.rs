//! The shared language of the cash-flow services, and nothing else: money, business dates,
//! merchant ids, entry kinds and the versioned events that cross SQS. Changes to an event are
//! additive; a breaking change is a new event type.

pub mod digest;
pub mod events;
pub mod money;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use events::{ENTRY_RECORDED, EVENT_TYPE_ATTRIBUTE, EntryRecordedV1, TRACEPARENT_ATTRIBUTE};
pub use money::{Amount, AmountError, Currency};

/// A merchant's id as it appears in paths and tokens: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MerchantId(String);

/// Why a merchant id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a merchant id is 1 to 64 characters of letters, digits, '_' and '-'")]
pub struct InvalidMerchantId;

impl MerchantId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MerchantId {
    type Err = InvalidMerchantId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(InvalidMerchantId)
        }
    }
}

impl<'de> Deserialize<'de> for MerchantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MerchantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Credit (money in) or debit (money out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Money in.
    Credit,
    /// Money out.
    Debit,
}

impl EntryKind {
    /// The kind that undoes this one (a reversal of a credit is a debit).
    pub fn opposite(self) -> Self {
        match self {
            Self::Credit => Self::Debit,
            Self::Debit => Self::Credit,
        }
    }

    /// As stored and serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Credit => "credit",
            Self::Debit => "debit",
        }
    }
}

impl FromStr for EntryKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "credit" => Ok(Self::Credit),
            "debit" => Ok(Self::Debit),
            other => Err(format!("{other:?} is not a kind; use credit or debit")),
        }
    }
}

/// Timestamps in the APIs: RFC 3339 in UTC with milliseconds, e.g. `2026-11-24T13:05:10.123Z`.
pub fn format_timestamp(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// Business dates are `YYYY-MM-DD` in JSON.
pub mod business_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;
    use time::macros::format_description;

    const FORMAT: &[time::format_description::FormatItem<'static>] =
        format_description!("[year]-[month]-[day]");

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Result<Date, String> {
        Date::parse(s, FORMAT).map_err(|_| format!("{s:?} is not a date in the form YYYY-MM-DD"))
    }

    /// Formats as `YYYY-MM-DD`.
    pub fn format(date: Date) -> String {
        date.format(FORMAT).unwrap_or_default()
    }

    /// serde `serialize_with`.
    pub fn serialize<S: Serializer>(date: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*date))
    }

    /// serde `deserialize_with`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_ids() {
        assert!("m1".parse::<MerchantId>().is_ok());
        assert!("shop_42-a".parse::<MerchantId>().is_ok());
        for bad in ["", "a b", "m/1", "ç", &"x".repeat(65)] {
            assert!(bad.parse::<MerchantId>().is_err(), "{bad:?}");
        }
    }
}
