-- Asset history (issue 10): immutable events, tracking, and what imports need to record
-- changes instead of overwriting them.

ALTER TABLE assets ADD COLUMN tracked INTEGER NOT NULL DEFAULT 1;
-- The incarnation of the source thing an import saw last (IoT Hub generationId, twin
-- version): a device deleted and created again under the same id is told apart by them.
ALTER TABLE assets ADD COLUMN source_generation TEXT;
ALTER TABLE assets ADD COLUMN source_version INTEGER;

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    asset_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    behaviour TEXT NOT NULL,
    operation TEXT NOT NULL,
    event_attributes TEXT NOT NULL,
    asset_attributes TEXT NOT NULL,
    timestamp_declared INTEGER NOT NULL,
    timestamp_accepted INTEGER NOT NULL,
    principal_declared TEXT NOT NULL,
    principal_accepted TEXT NOT NULL
);
CREATE INDEX events_tenant_seq ON events (tenant_id, seq);
CREATE INDEX events_asset_seq ON events (asset_id, seq);

ALTER TABLE imports ADD COLUMN number_assets_created INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN number_assets_changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN number_assets_unchanged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN number_assets_stopped_tracking INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN number_assets_tracked_again INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN number_assets_recreated INTEGER NOT NULL DEFAULT 0;

-- Assets from before this migration get the NewAsset event they would have had, dated at
-- their creation, so that every asset is what its events say (and at_time answers).
INSERT INTO events (id, asset_id, tenant_id, behaviour, operation, event_attributes,
                    asset_attributes, timestamp_declared, timestamp_accepted,
                    principal_declared, principal_accepted)
SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
             substr(hex(randomblob(2)), 2) || '-' ||
             substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' ||
             hex(randomblob(6))),
       id, tenant_id, 'AssetCreator', 'NewAsset', '{}', attributes, created_at, created_at,
       '{"issuer":"","subject":"","display_name":"","email":""}',
       '{"issuer":"","subject":"","display_name":"","email":""}'
FROM assets ORDER BY seq;

-- The stop pass after a finished import walks one hub's tracked assets in key order.
CREATE INDEX assets_tracked_source ON assets (tenant_id, source_key) WHERE tracked = 1;
