-- Asset history (issue 10): immutable events, tracking, and what imports need to record
-- changes instead of overwriting them. The same change as SQLite's 0005.

ALTER TABLE assets ADD COLUMN tracked BOOLEAN NOT NULL DEFAULT TRUE;
-- The incarnation of the source thing an import saw last (IoT Hub generationId, twin
-- version): a device deleted and created again under the same id is told apart by them.
ALTER TABLE assets ADD COLUMN source_generation TEXT;
ALTER TABLE assets ADD COLUMN source_version BIGINT;
-- The stop pass after a finished import walks one hub's tracked assets in byte order of
-- the key (COLLATE "C"), whatever the database's collation.
CREATE INDEX assets_tracked_source ON assets (tenant_id, (source_key COLLATE "C"))
    WHERE tracked;

CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    -- No foreign key to assets: as in SQLite, an event names its asset by id only, so a
    -- page write can add assets and their events in one statement.
    asset_id UUID NOT NULL,
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    behaviour TEXT NOT NULL,
    operation TEXT NOT NULL,
    event_attributes JSONB NOT NULL,
    asset_attributes JSONB NOT NULL,
    timestamp_declared TIMESTAMPTZ NOT NULL,
    timestamp_accepted TIMESTAMPTZ NOT NULL,
    principal_declared JSONB NOT NULL,
    principal_accepted JSONB NOT NULL
);
CREATE INDEX events_tenant_seq ON events (tenant_id, seq);
CREATE INDEX events_asset_seq ON events (asset_id, seq);
-- `event_attributes.X=value` / `asset_attributes.X=value` are containment tests.
CREATE INDEX events_event_attributes ON events USING GIN (event_attributes jsonb_path_ops);
CREATE INDEX events_asset_attributes ON events USING GIN (asset_attributes jsonb_path_ops);

ALTER TABLE imports ADD COLUMN number_assets_created BIGINT NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN number_assets_changed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN number_assets_unchanged BIGINT NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN number_assets_stopped_tracking BIGINT NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN number_assets_tracked_again BIGINT NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN number_assets_recreated BIGINT NOT NULL DEFAULT 0;

-- Assets from before this migration get the NewAsset event they would have had, dated at
-- their creation, so that every asset is what its events say (and at_time answers).
INSERT INTO events (id, asset_id, tenant_id, behaviour, operation, event_attributes,
                    asset_attributes, timestamp_declared, timestamp_accepted,
                    principal_declared, principal_accepted)
SELECT gen_random_uuid(), id, tenant_id, 'AssetCreator', 'NewAsset', '{}'::jsonb,
       attributes, created_at, created_at,
       '{"issuer":"","subject":"","display_name":"","email":""}'::jsonb,
       '{"issuer":"","subject":"","display_name":"","email":""}'::jsonb
FROM assets ORDER BY seq;
