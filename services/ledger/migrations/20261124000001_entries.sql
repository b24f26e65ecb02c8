-- Entries are never edited or deleted; a reversal is a new entry naming the one it undoes.
CREATE TABLE entries (
    id                UUID PRIMARY KEY,
    -- Insertion order, for stable cursor pagination.
    seq               BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    merchant_id       TEXT NOT NULL CHECK (merchant_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    kind              TEXT NOT NULL CHECK (kind IN ('credit', 'debit')),
    amount_minor      BIGINT NOT NULL CHECK (amount_minor > 0),
    currency          CHAR(3) NOT NULL,
    business_date     DATE NOT NULL,
    description       TEXT CHECK (char_length(description) <= 200),
    category          TEXT CHECK (char_length(category) <= 64),
    -- UNIQUE: an entry is reversed at most once.
    reverses_entry_id UUID UNIQUE REFERENCES entries (id),
    recorded_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX entries_by_merchant_day ON entries (merchant_id, business_date, seq);

-- The first answer to each Idempotency-Key, replayed for retries of the same request.
CREATE TABLE idempotency_keys (
    merchant_id     TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response_status SMALLINT,
    response_body   JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, idempotency_key)
);

-- Events written in the same transaction as their entry; the relay publishes them to SQS.
CREATE TABLE outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    event_type   TEXT NOT NULL,
    payload      JSONB NOT NULL,
    traceparent  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
