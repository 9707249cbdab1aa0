-- +goose Up
-- HTTP publishes no longer pass through Postgres: the API asks the
-- instance's node directly over the node link (nodelink.OpPublish).
DROP TABLE http_publishes;

-- +goose Down
CREATE TABLE http_publishes (
    id             text PRIMARY KEY,
    org_id         text NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    instance_id    text NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    node_id        text NOT NULL,
    topic          text NOT NULL,
    payload        bytea,
    qos            smallint NOT NULL CHECK (qos BETWEEN 0 AND 2),
    retain         boolean NOT NULL DEFAULT false,
    state          text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'done', 'expired')),
    result_code    text NOT NULL DEFAULT '',
    result_message text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    done_at        timestamptz
);
CREATE INDEX http_publishes_pending ON http_publishes (node_id, created_at) WHERE state = 'pending';
CREATE INDEX http_publishes_created ON http_publishes (created_at);
