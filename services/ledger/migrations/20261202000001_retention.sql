-- Retention (issue 16): the pruning task finds expired rows through these indexes, so a pass
-- costs the rows it deletes, not a scan of the table.
-- Idempotency keys expire after IDEMPOTENCY_KEY_RETENTION_SECONDS.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
-- Published outbox rows expire after OUTBOX_RETENTION_SECONDS; unpublished ones never do.
CREATE INDEX outbox_published_by_age ON outbox (published_at) WHERE published_at IS NOT NULL;
