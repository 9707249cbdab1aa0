-- +goose Up
-- Usage reports from data-plane nodes, counted once per (node, seq), and the
-- per-instance time buckets they roll up into (10 s kept 24 h, 1 min kept
-- 30 d, 1 h kept 13 months). Buckets feed the console charts, the metrics
-- API and billing.
CREATE TABLE usage_reports (
    node_id      text        NOT NULL,
    seq          bigint      NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, seq)
);
CREATE INDEX usage_reports_received ON usage_reports (received_at);

CREATE TABLE usage_buckets (
    instance_id        text        NOT NULL,
    org_id             text,                 -- resolved at ingest; kept after the instance is gone
    step_seconds       integer     NOT NULL CHECK (step_seconds IN (10, 60, 3600)),
    bucket_start       timestamptz NOT NULL,
    connects           bigint NOT NULL DEFAULT 0,
    auth_failures      bigint NOT NULL DEFAULT 0,
    messages_in        bigint NOT NULL DEFAULT 0,
    messages_out       bigint NOT NULL DEFAULT 0,
    bytes_in           bigint NOT NULL DEFAULT 0,
    bytes_out          bigint NOT NULL DEFAULT 0,
    message_units_in   bigint NOT NULL DEFAULT 0,
    message_units_out  bigint NOT NULL DEFAULT 0,
    connection_seconds bigint NOT NULL DEFAULT 0,
    drops_acl          bigint NOT NULL DEFAULT 0,
    drops_quota        bigint NOT NULL DEFAULT 0,
    drops_queue_full   bigint NOT NULL DEFAULT 0,
    drops_too_large    bigint NOT NULL DEFAULT 0,
    drops_expired      bigint NOT NULL DEFAULT 0,
    drops_other        bigint NOT NULL DEFAULT 0,
    -- gauges: the value at gauge_at (the latest report end in the bucket) and the maximum seen
    connections        bigint NOT NULL DEFAULT 0,
    connections_max    bigint NOT NULL DEFAULT 0,
    subscriptions      bigint NOT NULL DEFAULT 0,
    retained           bigint NOT NULL DEFAULT 0,
    stored_bytes       bigint NOT NULL DEFAULT 0,
    gauge_at           timestamptz,
    PRIMARY KEY (instance_id, step_seconds, bucket_start)
);
CREATE INDEX usage_buckets_org ON usage_buckets (org_id, step_seconds, bucket_start);

-- +goose Down
DROP TABLE usage_buckets;
DROP TABLE usage_reports;
