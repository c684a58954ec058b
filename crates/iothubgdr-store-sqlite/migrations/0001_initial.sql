-- Times are Unix milliseconds (INTEGER), UUIDs are hyphenated TEXT, JSON is TEXT:
-- the same shapes work in PostgreSQL (BIGINT, TEXT/UUID, JSONB) with little change.

CREATE TABLE signing_keys (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key_bytes BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE apps (
    client_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    secret_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE locations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    display_name TEXT NOT NULL,
    description TEXT NOT NULL,
    latitude REAL,
    longitude REAL,
    attributes TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX locations_tenant_seq ON locations (tenant_id, seq);

CREATE TABLE assets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    -- NULL for assets created over the API; the natural key of imported ones.
    source_key TEXT,
    behaviours TEXT NOT NULL,
    attributes TEXT NOT NULL,
    at_time INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (tenant_id, source_key)
);
CREATE INDEX assets_tenant_seq ON assets (tenant_id, seq);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL
);

CREATE TABLE imports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    display_name TEXT NOT NULL,
    arc_home_location_identity TEXT,
    status TEXT NOT NULL,
    error_message TEXT,
    number_assets_imported INTEGER NOT NULL DEFAULT 0,
    number_devices_total INTEGER,
    hub_host TEXT,
    worker_id TEXT,
    accepted_at INTEGER NOT NULL,
    finished_at INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX imports_tenant_seq ON imports (tenant_id, seq);
CREATE INDEX imports_status ON imports (status);
