-- Token signing keys get an id (`kid` in the JWT header) so several can verify at once:
-- rotation adds a new one that signs from then on, while tokens signed by older keys stay
-- valid until those keys are retired. The key of the single-key table keeps working under
-- the id `initial`.
CREATE TABLE token_signing_keys (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kid TEXT NOT NULL UNIQUE,
    key_bytes BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    retired_at TIMESTAMPTZ
);
INSERT INTO token_signing_keys (kid, key_bytes, created_at)
    SELECT 'initial', key_bytes, created_at FROM signing_keys;
DROP TABLE signing_keys;

-- The key that signs page tokens: one per database, never rotated.
CREATE TABLE paging_keys (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    key_bytes BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
