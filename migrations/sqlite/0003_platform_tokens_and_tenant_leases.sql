-- Sluice API store (SQLite). Immutable once merged.
-- A free-text description of a token (platform tokens are named by their id).
ALTER TABLE api_tokens ADD COLUMN description TEXT;

-- Per-tenant quota leases: a request that checks a tenant's quota and then writes to the
-- Kubernetes API holds the tenant's lease meanwhile, without holding a database connection or
-- transaction. A lease left by a crashed replica expires at expires_at (ms since the epoch).
CREATE TABLE tenant_leases (
    tenant_id   TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
