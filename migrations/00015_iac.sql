-- +goose Up
-- Infrastructure as code (issue 16).
-- A credential's password is either generated (high entropy; its SHA-256 in
-- secret_sha256) or supplied by the caller (password_hash: a bcrypt string,
-- whose "$2a$"/"$2b$" prefix names the scheme). Exactly one is set.
ALTER TABLE device_credentials ADD COLUMN password_hash text;
ALTER TABLE device_credentials ALTER COLUMN secret_sha256 DROP NOT NULL;
ALTER TABLE device_credentials ADD CONSTRAINT device_credentials_one_secret
    CHECK ((secret_sha256 IS NULL) <> (password_hash IS NULL));

-- ACL rules have an explicit position: 0-based, dense, the list's order.
ALTER TABLE acl_rules ADD COLUMN position integer NOT NULL DEFAULT 0;
UPDATE acl_rules r SET position = o.p
FROM (SELECT id, row_number() OVER (PARTITION BY instance_id ORDER BY id) - 1 AS p FROM acl_rules) o
WHERE o.id = r.id;
CREATE INDEX acl_rules_position ON acl_rules (instance_id, position);

-- API key names are unique among an org's live keys (older duplicates are
-- renamed "<name> (<id>)").
UPDATE api_keys k SET name = k.name || ' (' || k.id || ')'
WHERE k.revoked_at IS NULL AND EXISTS (
    SELECT 1 FROM api_keys o WHERE o.org_id = k.org_id AND o.name = k.name AND o.revoked_at IS NULL AND o.id > k.id);
CREATE UNIQUE INDEX api_keys_org_name ON api_keys (org_id, name) WHERE revoked_at IS NULL;

-- +goose Down
DROP INDEX api_keys_org_name;
DROP INDEX acl_rules_position;
ALTER TABLE acl_rules DROP COLUMN position;
DELETE FROM device_credentials WHERE secret_sha256 IS NULL;
ALTER TABLE device_credentials DROP CONSTRAINT device_credentials_one_secret;
ALTER TABLE device_credentials ALTER COLUMN secret_sha256 SET NOT NULL;
ALTER TABLE device_credentials DROP COLUMN password_hash;
