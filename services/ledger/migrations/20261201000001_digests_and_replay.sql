-- Reconciliation support (ADR 0007).
--
-- 1. Each entry keeps the id of its entry.recorded event, so a replay re-publishes the same
--    event id (the consumer deduplicates on it) even after the outbox row has been pruned.
ALTER TABLE entries ADD COLUMN event_id UUID;
UPDATE entries e SET event_id = (o.payload ->> 'event_id')::uuid
FROM outbox o
WHERE o.event_type = 'entry.recorded.v1' AND (o.payload ->> 'entry_id')::uuid = e.id;
CREATE UNIQUE INDEX entries_event_id ON entries (event_id);

-- 2. The 64-bit hash of an entry id whose XOR is a merchant-day's checksum. Must equal
--    cashflow_contracts::digest::entry_id_hash: first 8 bytes of SHA-256 over the uuid's bytes.
CREATE FUNCTION entry_id_hash(id UUID) RETURNS BIGINT
LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT ('x' || encode(substr(sha256(uuid_send(id)), 1, 8), 'hex'))::bit(64)::bigint $$;

-- 3. One row per merchant-day with entries: what the digest API serves, so a reconcile pass
--    costs one row per merchant-day instead of one per entry. Maintained by a trigger in the
--    inserting transaction (entries are never updated or deleted), so it is never a dual write.
--    Retention: one row per merchant-day, like the entries it summarises (kept as long as they are).
CREATE TABLE day_digests (
    business_date DATE NOT NULL,
    merchant_id   TEXT NOT NULL,
    entry_count   BIGINT NOT NULL,
    credits_minor BIGINT NOT NULL,
    debits_minor  BIGINT NOT NULL,
    checksum      BIGINT NOT NULL,
    PRIMARY KEY (business_date, merchant_id)
);
CREATE INDEX day_digests_by_merchant ON day_digests (merchant_id, business_date);

CREATE FUNCTION day_digests_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO day_digests AS d (business_date, merchant_id, entry_count, credits_minor,
                                  debits_minor, checksum)
    VALUES (NEW.business_date, NEW.merchant_id, 1,
            CASE WHEN NEW.kind = 'credit' THEN NEW.amount_minor ELSE 0 END,
            CASE WHEN NEW.kind = 'debit' THEN NEW.amount_minor ELSE 0 END,
            entry_id_hash(NEW.id))
    ON CONFLICT (business_date, merchant_id) DO UPDATE SET
        entry_count = d.entry_count + 1,
        credits_minor = d.credits_minor + EXCLUDED.credits_minor,
        debits_minor = d.debits_minor + EXCLUDED.debits_minor,
        checksum = d.checksum # EXCLUDED.checksum;
    RETURN NULL;
END $$;

CREATE TRIGGER entries_digest AFTER INSERT ON entries
FOR EACH ROW EXECUTE FUNCTION day_digests_add();

INSERT INTO day_digests
SELECT business_date, merchant_id, count(*),
       COALESCE(sum(amount_minor) FILTER (WHERE kind = 'credit'), 0),
       COALESCE(sum(amount_minor) FILTER (WHERE kind = 'debit'), 0),
       bit_xor(entry_id_hash(id))
FROM entries GROUP BY business_date, merchant_id;
