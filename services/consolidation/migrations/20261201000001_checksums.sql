-- Reconciliation (ADR 0007): each merchant-day keeps the XOR of the 64-bit hashes of the entry
-- ids applied to it (cashflow_contracts::digest::entry_id_hash), to compare with the ledger's
-- digest without listing entries. Rows from before this migration have NULL ("unknown"): the
-- reconciler compares their counts and sums only, and NULL stays NULL as events are added.
ALTER TABLE daily_balances ADD COLUMN entry_checksum BIGINT;
ALTER TABLE daily_balances ALTER COLUMN entry_checksum SET DEFAULT 0;

-- Dedup records expire after PROCESSED_EVENTS_RETENTION_DAYS (pruned in small batches).
CREATE INDEX processed_events_by_age ON processed_events (processed_at);
