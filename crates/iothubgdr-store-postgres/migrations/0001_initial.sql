-- The whole schema as the SQLite backend has it after its 0001 and 0002, in PostgreSQL's
-- native types: UUID, TIMESTAMPTZ, JSONB. Later migrations keep the numbers of the SQLite
-- ones so both backends move in step.

CREATE TABLE signing_keys (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    key_bytes BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE tenants (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE apps (
    client_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    secret_hash BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE locations (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    display_name TEXT NOT NULL,
    description TEXT NOT NULL,
    latitude DOUBLE PRECISION,
    longitude DOUBLE PRECISION,
    attributes JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX locations_tenant_seq ON locations (tenant_id, seq);
-- `attributes.X=value` filters are containment tests (attributes @> {"X": "value"}).
CREATE INDEX locations_attributes ON locations USING GIN (attributes jsonb_path_ops);

CREATE TABLE assets (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    -- NULL for assets created over the API; the natural key of imported ones.
    source_key TEXT,
    behaviours JSONB NOT NULL,
    attributes JSONB NOT NULL,
    at_time TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, source_key)
);
CREATE INDEX assets_tenant_seq ON assets (tenant_id, seq);
CREATE INDEX assets_attributes ON assets USING GIN (attributes jsonb_path_ops);

-- A worker holds its lease until `expires_at`, set from the database's clock.
CREATE TABLE workers (
    id UUID PRIMARY KEY,
    last_seen TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE imports (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    display_name TEXT NOT NULL,
    arc_home_location_identity TEXT,
    status TEXT NOT NULL
        CHECK (status IN ('PENDING', 'INPROGRESS', 'FINISHED', 'CANCELLED', 'FAILED')),
    error_message TEXT,
    number_assets_imported BIGINT NOT NULL DEFAULT 0,
    number_devices_total BIGINT,
    hub_host TEXT,
    worker_id UUID,
    accepted_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    deleted BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX imports_tenant_seq ON imports (tenant_id, seq);
-- Admission and claims count and scan only unfinished imports.
CREATE INDEX imports_unfinished_tenant ON imports (tenant_id, seq)
    WHERE status IN ('PENDING', 'INPROGRESS');
CREATE INDEX imports_unfinished_worker ON imports (worker_id, seq)
    WHERE status IN ('PENDING', 'INPROGRESS');
