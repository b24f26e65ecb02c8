-- A tiny schema for the harness's own template tests.
CREATE TABLE notes (
    id   BIGSERIAL PRIMARY KEY,
    body TEXT NOT NULL
);
