-- +goose Up
-- Where the control plane reaches a node's API (consumer groups read the
-- node's store), as the node reports it with its heartbeat.
ALTER TABLE nodes ADD COLUMN api_url text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE nodes DROP COLUMN api_url;
