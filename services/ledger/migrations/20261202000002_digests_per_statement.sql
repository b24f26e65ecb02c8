-- Group commit (ADR 0012): the day digests are maintained once per INSERT statement instead of
-- once per row. A batch of entries is one statement; a per-row trigger made it update the same
-- merchant-day row once per entry (a plpgsql call and a new row version each), which was most
-- of PostgreSQL's work per entry. The statement-level trigger adds each merchant-day's count,
-- sums and checksum once, from the statement's transition table, in (business_date,
-- merchant_id) order: the order concurrent statements lock digest rows in, so they cannot
-- deadlock. Same totals as before: count, credits, debits, XOR of the entry-id hashes.
CREATE FUNCTION day_digests_add_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO day_digests AS d (business_date, merchant_id, entry_count, credits_minor,
                                  debits_minor, checksum)
    SELECT business_date, merchant_id, count(*),
           COALESCE(sum(amount_minor) FILTER (WHERE kind = 'credit'), 0),
           COALESCE(sum(amount_minor) FILTER (WHERE kind = 'debit'), 0),
           bit_xor(entry_id_hash(id))
    FROM added
    GROUP BY business_date, merchant_id
    ORDER BY business_date, merchant_id
    ON CONFLICT (business_date, merchant_id) DO UPDATE SET
        entry_count = d.entry_count + EXCLUDED.entry_count,
        credits_minor = d.credits_minor + EXCLUDED.credits_minor,
        debits_minor = d.debits_minor + EXCLUDED.debits_minor,
        checksum = d.checksum # EXCLUDED.checksum;
    RETURN NULL;
END $$;

DROP TRIGGER entries_digest ON entries;
DROP FUNCTION day_digests_add();

CREATE TRIGGER entries_digest AFTER INSERT ON entries
REFERENCING NEW TABLE AS added
FOR EACH STATEMENT EXECUTE FUNCTION day_digests_add_rows();
