-- The stop pass walks one hub's tracked assets in key order: the unique index on
-- (tenant_id, source_key) serves that range, and skipping the few stopped assets costs
-- less than keeping a second index of the same keys up to date on every asset an import
-- creates.
DROP INDEX assets_tracked_source;
