-- Reads whose cost does not grow with history (ADR 0010). The opening balance of a day is the
-- sum of the merchant's years before its year, months before its month in that year, and days
-- before it in that month: at most (years of history) + 11 + 30 rows, instead of every earlier
-- day. The totals are additive, like daily_balances, and written by the consumer in the same
-- transaction as the daily upsert (after the dedup insert), so backdated and out-of-order events
-- land in the right period and a redelivery changes none of them.
CREATE TABLE monthly_totals (
    merchant_id     TEXT NOT NULL,
    -- First day of the month.
    month_start     DATE NOT NULL CHECK (extract(day FROM month_start) = 1),
    credits_minor   BIGINT NOT NULL CHECK (credits_minor >= 0),
    debits_minor    BIGINT NOT NULL CHECK (debits_minor >= 0),
    entry_count     BIGINT NOT NULL CHECK (entry_count >= 0),
    last_applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, month_start)
);

CREATE TABLE yearly_totals (
    merchant_id     TEXT NOT NULL,
    -- 1 January of the year.
    year_start      DATE NOT NULL CHECK (extract(doy FROM year_start) = 1),
    credits_minor   BIGINT NOT NULL CHECK (credits_minor >= 0),
    debits_minor    BIGINT NOT NULL CHECK (debits_minor >= 0),
    entry_count     BIGINT NOT NULL CHECK (entry_count >= 0),
    last_applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, year_start)
);

-- Backfill from the days. SHARE mode keeps writers out until this transaction commits, so no
-- batch is applied between the backfill and the new code's first write.
LOCK TABLE daily_balances IN SHARE MODE;
INSERT INTO monthly_totals
SELECT merchant_id, date_trunc('month', business_date)::date, sum(credits_minor),
       sum(debits_minor), sum(entry_count), max(last_applied_at)
FROM daily_balances GROUP BY 1, 2;
INSERT INTO yearly_totals
SELECT merchant_id, date_trunc('year', business_date)::date, sum(credits_minor),
       sum(debits_minor), sum(entry_count), max(last_applied_at)
FROM daily_balances GROUP BY 1, 2;
