-- Sluice API store (SQLite). Immutable once merged.
-- Metering of ingest: events and bytes per tenant, stream and minute. The API adds up counts in
-- memory and adds them here every few seconds; rows of several replicas for the same minute add
-- up. No foreign key to tenants: metering history outlives a tenant's deletion.
CREATE TABLE ingest_usage (
    tenant_id  TEXT NOT NULL,
    stream     TEXT NOT NULL,
    minute     BIGINT NOT NULL,   -- start of the minute, ms since the Unix epoch
    events     BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, stream, minute)
);
CREATE INDEX ingest_usage_minute ON ingest_usage (minute);
