-- Replicas coordinated through the database (issue 9).
-- A worker's lease ends at `expires_at`, Unix milliseconds computed by the database's own
-- clock when it heartbeats, so processes with skewed clocks or different lease flags agree.
ALTER TABLE workers ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
-- Claims count a tenant's unfinished imports and scan one worker's pending ones.
CREATE INDEX imports_tenant_status_seq ON imports (tenant_id, status, seq);
CREATE INDEX imports_worker_status ON imports (worker_id, status);
