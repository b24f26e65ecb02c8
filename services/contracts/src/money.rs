//! Money: decimal strings with at most two decimals in JSON, integer minor units inside. Never
//! floats.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest amount accepted: 1e13 minor units (100 billion in major units) keeps every sum of a
/// merchant's day far inside `i64`.
pub const MAX_MINOR: i64 = 10_000_000_000_000;

/// A positive amount in minor units (cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a plain decimal number.
    #[error("must be a decimal string such as \"100.10\"")]
    Format,
    /// Three or more decimals.
    #[error("has more than 2 decimals")]
    Precision,
    /// Zero or negative.
    #[error("must be greater than zero")]
    NotPositive,
    /// Above [`MAX_MINOR`].
    #[error("is too large (at most 100000000000.00)")]
    TooLarge,
}

impl Amount {
    /// From minor units; must be in `1..=MAX_MINOR`.
    pub fn from_minor(minor: i64) -> Result<Self, AmountError> {
        if minor <= 0 {
            Err(AmountError::NotPositive)
        } else if minor > MAX_MINOR {
            Err(AmountError::TooLarge)
        } else {
            Ok(Self(minor))
        }
    }

    /// Minor units.
    pub fn minor(self) -> i64 {
        self.0
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (sign, digits) = match s.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, s),
        };
        let (int, frac) = match digits.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (digits, None),
        };
        let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
            return Err(AmountError::Format);
        }
        let frac = frac.unwrap_or("");
        if frac.len() > 2 {
            return Err(AmountError::Precision);
        }
        // Leading zeros are fine; anything longer than i64 can hold is too large anyway.
        let int_value: i64 = int.trim_start_matches('0').parse().or_else(|_| {
            if int.trim_start_matches('0').is_empty() {
                Ok(0)
            } else {
                Err(AmountError::TooLarge)
            }
        })?;
        let frac_value: i64 = format!("{frac:0<2}")
            .parse()
            .map_err(|_| AmountError::Format)?;
        let minor = int_value
            .checked_mul(100)
            .and_then(|v| v.checked_add(frac_value))
            .ok_or(AmountError::TooLarge)?;
        Self::from_minor(sign * minor)
    }
}

/// Formats minor units as a decimal string with two decimals (negative values too, for balances).
pub fn format_minor(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_minor(self.0))
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An ISO 4217 currency with two decimals, from the set the platform supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(&'static str);

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Currencies with two minor digits the platform books in.
pub const SUPPORTED_CURRENCIES: [&str; 8] =
    ["BRL", "USD", "EUR", "GBP", "ARS", "CLP", "MXN", "COP"];

impl Currency {
    /// Brazilian real, every merchant's default.
    pub const BRL: Currency = Currency("BRL");

    /// The ISO code.
    pub fn code(self) -> &'static str {
        self.0
    }
}

impl FromStr for Currency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SUPPORTED_CURRENCIES
            .iter()
            .find(|c| **c == s)
            .map(|c| Currency(c))
            .ok_or_else(|| {
                format!(
                    "unknown currency {s:?}; supported: {}",
                    SUPPORTED_CURRENCIES.join(", ")
                )
            })
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_strings_into_minor_units() {
        assert_eq!("100.10".parse::<Amount>().map(Amount::minor), Ok(10010));
        assert_eq!("100.1".parse::<Amount>().map(Amount::minor), Ok(10010));
        assert_eq!("7".parse::<Amount>().map(Amount::minor), Ok(700));
        assert_eq!("0.01".parse::<Amount>().map(Amount::minor), Ok(1));
        assert_eq!("007.5".parse::<Amount>().map(Amount::minor), Ok(750));
        assert_eq!(
            "100000000000.00".parse::<Amount>().map(Amount::minor),
            Ok(MAX_MINOR)
        );
    }

    #[test]
    fn refuses_bad_amounts() {
        use AmountError::*;
        for (input, error) in [
            ("0", NotPositive),
            ("0.00", NotPositive),
            ("-5", NotPositive),
            ("1.234", Precision),
            ("1e5", Format),
            ("", Format),
            (".5", Format),
            ("5.", Format),
            (" 5", Format),
            ("+5", Format),
            ("1,50", Format),
            ("NaN", Format),
            ("100000000000.01", TooLarge),
            ("99999999999999999999999", TooLarge),
        ] {
            assert_eq!(input.parse::<Amount>(), Err(error), "{input:?}");
        }
    }

    #[test]
    fn formats_minor_units() {
        assert_eq!(format_minor(10010), "100.10");
        assert_eq!(format_minor(5), "0.05");
        assert_eq!(format_minor(-3005), "-30.05");
        assert_eq!(format_minor(0), "0.00");
    }

    #[test]
    fn currencies() {
        assert_eq!("BRL".parse::<Currency>(), Ok(Currency::BRL));
        assert!("XYZ".parse::<Currency>().is_err());
        assert!("brl".parse::<Currency>().is_err());
    }
}
