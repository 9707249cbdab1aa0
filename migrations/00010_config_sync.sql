-- +goose Up
-- The config revision of each instance's latest change (credential, ACL
-- rule, token, quotas, settings), so the API can say whether the
-- instance's node has applied it (nodes.applied_revision >= revision).
-- Written by every config change after it takes the global revision, so
-- its rows are only ever locked after config_revision (no lock cycles).
CREATE TABLE instance_config_revisions (
    instance_id text PRIMARY KEY,
    revision bigint NOT NULL
);
INSERT INTO instance_config_revisions (instance_id, revision)
SELECT i.id, greatest(i.provisioned_revision, coalesce((SELECT max(o.revision) FROM config_outbox o WHERE o.instance_id = i.id), 0))
FROM instances i;

-- +goose Down
DROP TABLE instance_config_revisions;
