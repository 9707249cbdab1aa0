-- +goose Up
-- Cells: a set of data-plane nodes sharing one store, serving the same
-- instances. Every node belongs to exactly one cell; an instance is placed
-- on a cell (instances.node_id stays: the node it was first placed on, its
-- preferred node for requests). endpoints is the operator's override (a DNS
-- name or load balancer in front of the cell's nodes, "mqtt" → URL); empty:
-- the instance shows its cell's nodes' own endpoints. A cell of one node is
-- the single-node topology of before.
CREATE TABLE cells (
    id         text PRIMARY KEY,                          -- c-…
    name       text NOT NULL UNIQUE,
    endpoints  jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every existing node gets a one-node cell named after it.
INSERT INTO cells (id, name, created_at) SELECT 'c-' || substr(id, 3), name, created_at FROM nodes;
ALTER TABLE nodes ADD COLUMN cell_id text REFERENCES cells(id);
UPDATE nodes SET cell_id = 'c-' || substr(id, 3);
ALTER TABLE nodes ALTER COLUMN cell_id SET NOT NULL;
CREATE INDEX nodes_cell ON nodes (cell_id);

ALTER TABLE instances ADD COLUMN cell_id text REFERENCES cells(id);
UPDATE instances i SET cell_id = n.cell_id FROM nodes n WHERE n.id = i.node_id;
ALTER TABLE instances ALTER COLUMN cell_id SET NOT NULL;
CREATE INDEX instances_cell ON instances (cell_id);

-- The config outbox is per cell: every node of the cell reads the same
-- rows in revision order (node_id is no longer written).
ALTER TABLE config_outbox ADD COLUMN cell_id text;
UPDATE config_outbox o SET cell_id = n.cell_id FROM nodes n WHERE n.id = o.node_id;
DELETE FROM config_outbox WHERE cell_id IS NULL;
ALTER TABLE config_outbox ALTER COLUMN cell_id SET NOT NULL;
ALTER TABLE config_outbox ALTER COLUMN node_id DROP NOT NULL;
DROP INDEX config_outbox_node;
CREATE INDEX config_outbox_cell ON config_outbox (cell_id, revision);

-- +goose Down
UPDATE config_outbox o SET node_id = (SELECT n.id FROM nodes n WHERE n.cell_id = o.cell_id ORDER BY n.id LIMIT 1) WHERE node_id IS NULL;
DELETE FROM config_outbox WHERE node_id IS NULL;
ALTER TABLE config_outbox ALTER COLUMN node_id SET NOT NULL;
DROP INDEX config_outbox_cell;
CREATE INDEX config_outbox_node ON config_outbox (node_id, revision);
ALTER TABLE config_outbox DROP COLUMN cell_id;
ALTER TABLE instances DROP COLUMN cell_id;
ALTER TABLE nodes DROP COLUMN cell_id;
DROP TABLE cells;
