-- +goose Up
-- The latest stored bytes of each provisioned topic, as its node's usage
-- reports carry them (a gauge: the value at reported_at, the end of the
-- report's window). Only the latest value is kept; it goes with the topic
-- (and so with its instance). org_id is resolved at ingest, like
-- usage_buckets', and scopes every read.
CREATE TABLE topic_storage (
    topic_id     text PRIMARY KEY REFERENCES topics(id) ON DELETE CASCADE,
    instance_id  text NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    org_id       text NOT NULL,
    stored_bytes bigint NOT NULL CHECK (stored_bytes >= 0),
    reported_at  timestamptz NOT NULL
);
CREATE INDEX topic_storage_org ON topic_storage (org_id, instance_id);

-- +goose Down
DROP TABLE topic_storage;
