//! The merchant-day digest both services compute: entry count, credit and debit sums in minor
//! units, and an order-independent checksum of the entry ids, so that the consolidation can prove
//! it holds the same set of entries as the ledger without listing them.
//!
//! The checksum is the XOR of a 64-bit hash of each entry id: the first 8 bytes (big-endian) of
//! SHA-256 over the id's 16 bytes. XOR is order-independent and can be maintained incrementally
//! in PostgreSQL (`#` on `bigint`) without overflow; the hash spreads UUIDv7's time-ordered bits.
//! The ledger computes the same value in SQL (see its `entry_id_hash` function), so the two must
//! stay in step: [`entry_id_hash`] is the reference and both sides are tested against it.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The 64-bit hash of one entry id that the checksum XORs together.
pub fn entry_id_hash(entry_id: &Uuid) -> i64 {
    let hash = Sha256::digest(entry_id.as_bytes());
    let mut first = [0_u8; 8];
    first.copy_from_slice(&hash[..8]);
    i64::from_be_bytes(first)
}

/// Formats a checksum as the 16 hex digits the APIs carry (JSON numbers lose 64-bit precision).
pub fn format_checksum(checksum: i64) -> String {
    format!("{:016x}", checksum as u64)
}

/// Parses [`format_checksum`]'s output.
pub fn parse_checksum(text: &str) -> Option<i64> {
    u64::from_str_radix(text, 16).ok().map(|v| v as i64)
}

/// One merchant-day as the ledger's digest API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayDigest {
    /// Whose books.
    pub merchant_id: String,
    /// `YYYY-MM-DD`.
    pub business_date: String,
    /// Entries recorded for that day.
    pub entry_count: i64,
    /// Sum of credits, minor units.
    pub credits_minor: i64,
    /// Sum of debits, minor units.
    pub debits_minor: i64,
    /// XOR of [`entry_id_hash`] over the day's entries, as 16 hex digits.
    pub checksum: String,
}

/// A page of digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestPage {
    /// Merchant-days in (business_date, merchant_id) order.
    pub items: Vec<DayDigest>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_order_independent_and_round_trips() {
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let forward = ids.iter().fold(0, |acc, id| acc ^ entry_id_hash(id));
        let backward = ids.iter().rev().fold(0, |acc, id| acc ^ entry_id_hash(id));
        assert_eq!(forward, backward);
        let without_one = ids[1..].iter().fold(0, |acc, id| acc ^ entry_id_hash(id));
        assert_ne!(forward, without_one);
        assert_eq!(parse_checksum(&format_checksum(forward)), Some(forward));
        assert_eq!(parse_checksum(&format_checksum(-1)), Some(-1));
    }

    #[test]
    fn hash_of_a_known_id() {
        // Pinned: the ledger's SQL function must give the same value for this id.
        let id = Uuid::from_u128(1);
        assert_eq!(format_checksum(entry_id_hash(&id)), KNOWN_HASH_OF_ONE);
    }

    /// SHA-256 of 00..01 (16 bytes), first 8 bytes.
    const KNOWN_HASH_OF_ONE: &str = "7c3ccd10bb7ec37b";
}
