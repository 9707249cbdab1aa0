-- +goose Up
-- Forwarding rules: an instance's messages matching filter go to a sink
-- (webhook: CloudEvents over HTTPS), pushed to the instance's node, which
-- delivers them from its store. secret is the rule's signing secret, sealed
-- with the key-encryption key (internal/secretbox); the node fetches it,
-- it never travels in the config feed.
CREATE TABLE rules (
  id text PRIMARY KEY,
  instance_id text NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  name text NOT NULL,
  filter text NOT NULL,
  paused boolean NOT NULL DEFAULT false,
  max_age_seconds bigint NOT NULL DEFAULT 86400,
  sink_type text NOT NULL,
  sink jsonb NOT NULL DEFAULT '{}',
  secret bytea NOT NULL,
  secret_prefix text NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  UNIQUE (instance_id, name)
);
CREATE INDEX rules_instance ON rules (instance_id, id);
UPDATE plans SET limits = jsonb_set(jsonb_set(limits, '{max_rules_per_instance}', to_jsonb(CASE id
    WHEN 'free' THEN 5 WHEN 'developer' THEN 25 WHEN 'pro' THEN 200 ELSE 1000 END)),
  '{unverified,max_rules_per_instance}', '2'::jsonb)
  WHERE limits ? 'unverified';
-- Messages delivered by forwarding rules (also in messages_out and the
-- message units).
ALTER TABLE usage_buckets ADD COLUMN messages_forwarded bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE usage_buckets DROP COLUMN messages_forwarded;
DROP TABLE rules;
UPDATE plans SET limits = (limits - 'max_rules_per_instance') #- '{unverified,max_rules_per_instance}';
