-- The relay claims outbox rows with a lease instead of holding them locked in a transaction
-- while SQS answers (ADR 0014): a claim is one autocommitted UPDATE setting `claimed_until`; the
-- rows are published outside any transaction, then marked published. A relay that dies or
-- hangs between claim and mark loses nothing: once the lease has passed, another loop claims
-- the rows again (at least once; the consumer deduplicates on the event id). Adding a nullable
-- column without a default rewrites nothing.
ALTER TABLE outbox ADD COLUMN claimed_until timestamptz;
