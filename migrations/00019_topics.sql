-- +goose Up
-- Provisioned topics: a named topic filter with its own policy, pushed to
-- the instance's node. strict_topics: devices may only publish to topics
-- matching one of them.
CREATE TABLE topics (
  id text PRIMARY KEY,
  instance_id text NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  name text NOT NULL,
  filter text NOT NULL,
  retention_seconds bigint NOT NULL DEFAULT 0,
  retention_bytes bigint NOT NULL DEFAULT 0,
  max_qos smallint NOT NULL DEFAULT 2,
  retain_allowed boolean NOT NULL DEFAULT true,
  max_payload_bytes integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  UNIQUE (instance_id, name)
);
CREATE INDEX topics_instance ON topics (instance_id, id);
ALTER TABLE instances ADD COLUMN strict_topics boolean NOT NULL DEFAULT false;
UPDATE plans SET limits = jsonb_set(jsonb_set(limits, '{max_topics_per_instance}', to_jsonb(CASE id
    WHEN 'free' THEN 20 WHEN 'developer' THEN 100 WHEN 'pro' THEN 1000 ELSE 10000 END)),
  '{unverified,max_topics_per_instance}', '10'::jsonb)
  WHERE limits ? 'unverified';

-- +goose Down
ALTER TABLE instances DROP COLUMN strict_topics;
DROP TABLE topics;
UPDATE plans SET limits = (limits - 'max_topics_per_instance') #- '{unverified,max_topics_per_instance}';
