-- +goose Up
-- Instances and what the data plane enforces for them (credentials, ACL
-- rules, quotas, device-token keys and revocations), the data-plane nodes
-- they are placed on, and the config outbox that pushes every change to the
-- node in revision order.

-- Data-plane nodes. A node authenticates with aen_<id>_<secret>; the secret
-- is stored as SHA-256.
CREATE TABLE nodes (
    id               text PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    token_hash       bytea NOT NULL,
    endpoints        jsonb NOT NULL DEFAULT '{}',
    connections      bigint NOT NULL DEFAULT 0,
    applied_revision bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz,
    revoked_at       timestamptz
);

CREATE TABLE instances (
    id                  text PRIMARY KEY,                 -- i-<10 base32>
    org_id              text NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name                text NOT NULL,
    plan_id             text NOT NULL REFERENCES plans(id),
    status              text NOT NULL CHECK (status IN ('provisioning', 'running', 'suspended', 'deleting')),
    node_id             text NOT NULL REFERENCES nodes(id),
    allow_anonymous     boolean NOT NULL DEFAULT false,
    deletion_protection boolean NOT NULL DEFAULT false,
    quotas              jsonb NOT NULL,                  -- effective config.Quotas (≤ the plan's)
    provisioned_revision bigint NOT NULL DEFAULT 0,      -- the config revision that created it
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);
CREATE INDEX instances_org ON instances (org_id, id);
CREATE INDEX instances_node ON instances (node_id);

CREATE TABLE device_credentials (
    id                text PRIMARY KEY,                  -- c-…
    instance_id       text NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    username          text NOT NULL,
    secret_sha256     bytea NOT NULL,
    client_id_pattern text NOT NULL DEFAULT '',
    enabled           boolean NOT NULL DEFAULT true,
    expires_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instance_id, username)
);
CREATE INDEX device_credentials_instance ON device_credentials (instance_id, id);

CREATE TABLE acl_rules (
    id            text PRIMARY KEY,                      -- r-…
    instance_id   text NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    effect        text NOT NULL CHECK (effect IN ('allow', 'deny')),
    action        text NOT NULL CHECK (action IN ('publish', 'subscribe', 'all')),
    filter        text NOT NULL,
    credential_id text REFERENCES device_credentials(id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX acl_rules_instance ON acl_rules (instance_id, id);

-- Per-instance Ed25519 keys that sign device tokens.
CREATE TABLE instance_token_keys (
    instance_id text NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    kid         text NOT NULL,
    private_key bytea NOT NULL,                          -- Ed25519 seed
    public_key  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, kid)
);

-- Issued device tokens (never the token itself) and their revocation.
CREATE TABLE device_tokens (
    jti         text PRIMARY KEY,
    instance_id text NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    client_id   text NOT NULL DEFAULT '',
    resources   jsonb NOT NULL,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX device_tokens_instance ON device_tokens (instance_id, jti);

-- One global config revision. Taking the next one locks this row until the
-- transaction ends, so revisions commit in order and a node that has seen
-- revision N never later misses a smaller one.
CREATE TABLE config_revision (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    last   bigint NOT NULL,
    pruned bigint NOT NULL DEFAULT 0                      -- outbox rows up to here are gone
);
INSERT INTO config_revision (last) VALUES (0);

-- What each node must apply, in revision order. Rows older than the
-- retention window are pruned; a node further behind gets a snapshot.
CREATE TABLE config_outbox (
    revision    bigint PRIMARY KEY,
    node_id     text NOT NULL,
    instance_id text NOT NULL,
    event       jsonb NOT NULL,                          -- config.Event without rev
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX config_outbox_node ON config_outbox (node_id, revision);

-- +goose Down
DROP TABLE config_outbox;
DROP TABLE config_revision;
DROP TABLE device_tokens;
DROP TABLE instance_token_keys;
DROP TABLE acl_rules;
DROP TABLE device_credentials;
DROP TABLE instances;
DROP TABLE nodes;
