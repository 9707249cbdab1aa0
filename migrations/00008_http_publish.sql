-- +goose Up
-- HTTP publishes on their way to the instance's node. The API writes a row
-- and notifies; the control-plane process streaming that node's config
-- claims it (the payload is cleared then) and sends it down the stream; the
-- node answers with the outcome. Rows are short-lived: pruned after an hour.
CREATE TABLE http_publishes (
    id             text PRIMARY KEY,                   -- pub-…
    org_id         text NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    instance_id    text NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    node_id        text NOT NULL,
    topic          text NOT NULL,
    payload        bytea,                              -- NULL once claimed
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

-- +goose Down
DROP TABLE http_publishes;
