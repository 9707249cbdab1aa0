-- +goose Up
-- A billing limit on an instance (the org is over its spend limit or its
-- plan's included usage): '' none, 'throttle' or 'suspend'. Kept apart from
-- status and quotas so lifting the limit restores exactly what the user set.
ALTER TABLE instances ADD COLUMN limited text NOT NULL DEFAULT ''
    CHECK (limited IN ('', 'throttle', 'suspend'));

-- +goose Down
ALTER TABLE instances DROP COLUMN limited;
