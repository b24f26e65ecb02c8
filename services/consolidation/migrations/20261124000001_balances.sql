-- Events already applied: the dedup record, written in the same transaction as the balance
-- change, so a redelivered event changes nothing.
CREATE TABLE processed_events (
    event_id     UUID PRIMARY KEY,
    merchant_id  TEXT NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per merchant and business date with entries. Opening and closing balances are not
-- stored: they are sums over earlier days at read time, so events arriving out of order or
-- backdated never leave a stale running balance behind.
CREATE TABLE daily_balances (
    merchant_id             TEXT NOT NULL,
    business_date           DATE NOT NULL,
    currency                CHAR(3) NOT NULL,
    credits_minor           BIGINT NOT NULL DEFAULT 0 CHECK (credits_minor >= 0),
    debits_minor            BIGINT NOT NULL DEFAULT 0 CHECK (debits_minor >= 0),
    entry_count             BIGINT NOT NULL DEFAULT 0 CHECK (entry_count >= 0),
    -- recorded_at of the latest event applied to this day (ledger time).
    last_event_recorded_at  TIMESTAMPTZ NOT NULL,
    -- When the latest event was applied (consolidation time).
    last_applied_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, business_date)
);
