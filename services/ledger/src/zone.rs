//! The merchants' time zone: which calendar day "today" is, for the default business date and
//! the backdating window. Dates and times are `time` values throughout the workspace; the zone
//! rules come from the IANA database compiled into the binary (`tzdb`; ADR 16, "One date-time
//! crate"), so the answer does not depend on the image's tzdata. An unknown zone name is refused
//! when the configuration is read, and a zone that cannot say what day it is is an error, never
//! a default.

use std::fmt;

use cashflow_platform::edge::ApiError;
use time::{Date, OffsetDateTime, UtcOffset};

/// A time zone of the IANA database.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MerchantZone {
    /// The name as the database spells it (lookups ignore case).
    name: &'static str,
    rules: tz::TimeZoneRef<'static>,
}

/// Why a zone could not be found or could not say what day it is.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// No zone of that name.
    #[error(
        "{0:?} is not a time zone of the IANA database (release {release}), e.g. America/Sao_Paulo",
        release = tzdb::VERSION
    )]
    Unknown(String),
    /// The zone's rules give no local time for the instant.
    #[error("the time zone {zone} has no local time for {at}")]
    NoLocalTime {
        /// The zone.
        zone: &'static str,
        /// The instant.
        at: OffsetDateTime,
        /// What the rules said.
        #[source]
        source: tz::TzError,
    },
    /// The zone's offset is not one `time` represents.
    #[error("the time zone {zone} gives an offset of {seconds} s for {at}")]
    Offset {
        /// The zone.
        zone: &'static str,
        /// The instant.
        at: OffsetDateTime,
        /// The offset, in seconds east of UTC.
        seconds: i32,
        /// Why `time` refused it.
        #[source]
        source: time::error::ComponentRange,
    },
    /// The local date falls outside the dates `time` represents.
    #[error("{at} in the time zone {zone} is outside the representable dates")]
    OutOfRange {
        /// The zone.
        zone: &'static str,
        /// The instant.
        at: OffsetDateTime,
    },
}

/// A zone that cannot say what day it is fails the request: the service's fault, logged, 500.
impl From<ZoneError> for ApiError {
    fn from(e: ZoneError) -> Self {
        Self::Internal(anyhow::Error::new(e))
    }
}

impl MerchantZone {
    /// The zone called `name` (`America/Sao_Paulo`; case is ignored).
    pub fn named(name: &str) -> Result<Self, ZoneError> {
        let unknown = || ZoneError::Unknown(name.to_string());
        let rules = tzdb::tz_by_name(name).ok_or_else(unknown)?;
        // The database's own spelling, for messages and logs.
        let name = tzdb::TZ_NAMES
            .iter()
            .find(|known| known.eq_ignore_ascii_case(name))
            .ok_or_else(unknown)?;
        Ok(Self { name, rules })
    }

    /// The zone's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The calendar date in this zone at `at`.
    pub fn date_at(&self, at: OffsetDateTime) -> Result<Date, ZoneError> {
        let zone = self.name;
        let local = self
            .rules
            .find_local_time_type(at.unix_timestamp())
            .map_err(|source| ZoneError::NoLocalTime { zone, at, source })?;
        let seconds = local.ut_offset();
        let offset =
            UtcOffset::from_whole_seconds(seconds).map_err(|source| ZoneError::Offset {
                zone,
                at,
                seconds,
                source,
            })?;
        at.checked_to_offset(offset)
            .map(OffsetDateTime::date)
            .ok_or(ZoneError::OutOfRange { zone, at })
    }

    /// Today in this zone.
    pub fn today(&self) -> Result<Date, ZoneError> {
        self.date_at(OffsetDateTime::now_utc())
    }
}

/// A zone's name, as configured (`MERCHANT_TIMEZONE`).
impl std::str::FromStr for MerchantZone {
    type Err = ZoneError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::named(name)
    }
}

/// America/Sao_Paulo, the merchants' zone unless configured otherwise.
impl Default for MerchantZone {
    fn default() -> Self {
        Self {
            name: "America/Sao_Paulo",
            rules: tzdb::time_zone::america::SAO_PAULO,
        }
    }
}

/// The name only: the rules are the database's.
impl fmt::Debug for MerchantZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MerchantZone").field(&self.name).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn the_day_turns_at_local_midnight() {
        let sao_paulo = MerchantZone::default();
        assert_eq!(
            sao_paulo,
            MerchantZone::named("America/Sao_Paulo").expect("zone")
        );
        // UTC-3: 02:59Z is still the day before, 03:00Z the day itself.
        assert_eq!(
            sao_paulo
                .date_at(datetime!(2026-11-25 02:59 UTC))
                .expect("date"),
            date!(2026 - 11 - 24)
        );
        assert_eq!(
            sao_paulo
                .date_at(datetime!(2026-11-25 03:00 UTC))
                .expect("date"),
            date!(2026 - 11 - 25)
        );
        // Daylight saving time: Berlin is UTC+1 in January and UTC+2 in July.
        let berlin = MerchantZone::named("europe/berlin").expect("case is ignored");
        assert_eq!(berlin.name(), "Europe/Berlin");
        assert_eq!(
            berlin
                .date_at(datetime!(2026-01-15 22:59 UTC))
                .expect("date"),
            date!(2026 - 01 - 15)
        );
        assert_eq!(
            berlin
                .date_at(datetime!(2026-07-15 22:00 UTC))
                .expect("date"),
            date!(2026 - 07 - 16)
        );
    }

    #[test]
    fn an_unknown_zone_is_an_error_naming_it() {
        for name in ["Mars/Olympus_Mons", "", "America/Sao Paulo"] {
            // As `MERCHANT_TIMEZONE` is read at start.
            let error = name.parse::<MerchantZone>().expect_err(name);
            assert!(error.to_string().contains(&format!("{name:?}")), "{error}");
        }
    }
}
