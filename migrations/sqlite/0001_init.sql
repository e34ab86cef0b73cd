-- Sluice API store (SQLite). Immutable once merged: add a new numbered file to change it.
-- Times are milliseconds since the Unix epoch (BIGINT), so that the SQLite store is identical.

-- The tenant registry: which tenants the API manages. Specs live in the Kubernetes API.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);

-- API tokens Sluice issued. Only a hash of each token is kept.
-- scope is the tenant id, or '' for platform tokens (so (scope, name) is unique for both).
CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    scope         TEXT NOT NULL,
    tenant_id     TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    expires_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT,
    UNIQUE (scope, name)
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id, id);

-- Who did what to which object, when, from where, and how it ended.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    tenant    TEXT,
    action    TEXT NOT NULL,
    object    TEXT NOT NULL,
    source    TEXT,
    status    INTEGER NOT NULL,
    outcome   TEXT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_at ON audit_log (at);

-- Results of creates sent with an Idempotency-Key, per scope (tenant) and key.
CREATE TABLE idempotency_keys (
    scope         TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER,
    body          TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
