-- +goose Up
-- Plans (seeded here, editable by the operator), one subscription per org,
-- and invoices numbered gap-free per operator. Money is integer cents.
CREATE TABLE plans (
    id                       text PRIMARY KEY,          -- free, developer, pro, enterprise
    name                     text NOT NULL,
    position                 integer NOT NULL,          -- order from smallest to largest
    currency                 text NOT NULL DEFAULT 'USD',
    base_cents               bigint NOT NULL CHECK (base_cents >= 0),
    included_connection_minutes bigint NOT NULL,
    included_message_units   bigint NOT NULL,           -- one unit per started 5 KiB of payload
    included_transfer_bytes  bigint NOT NULL,
    included_storage_byte_hours bigint NOT NULL,        -- GB-months expressed in byte-hours
    overage                  jsonb NOT NULL,            -- {"messages":{"block":1000000,"cents":100},…}; empty: no overage (hard cap)
    quotas                   jsonb NOT NULL,            -- config.Quotas granted to every instance
    updated_at               timestamptz NOT NULL DEFAULT now()
);

INSERT INTO plans (id, name, position, base_cents, included_connection_minutes, included_message_units,
                   included_transfer_bytes, included_storage_byte_hours, overage, quotas) VALUES
('free', 'Free', 0, 0, 1000000, 1000000, 1000000000, 744000000000, '{}',
 '{"max_connections":100,"max_connects_per_second":10,"max_publish_per_second":100,"max_publish_per_second_per_client":20,"max_bytes_per_second":1048576,"max_payload_bytes":65536,"max_subscriptions_per_client":20,"max_topic_levels":8,"max_retained_messages":100,"max_session_expiry_seconds":86400,"max_inflight":32}'),
('developer', 'Developer', 1, 1500, 10000000, 20000000, 20000000000, 7440000000000,
 '{"connection_minutes":{"block":100000,"cents":10},"messages":{"block":1000000,"cents":100},"transfer":{"block":1000000000,"cents":10},"storage":{"block":744000000000,"cents":10}}',
 '{"max_connections":1000,"max_connects_per_second":100,"max_publish_per_second":1000,"max_publish_per_second_per_client":100,"max_bytes_per_second":10485760,"max_payload_bytes":262144,"max_subscriptions_per_client":50,"max_topic_levels":16,"max_retained_messages":10000,"max_session_expiry_seconds":604800,"max_inflight":64}'),
('pro', 'Pro', 2, 9900, 100000000, 300000000, 300000000000, 74400000000000,
 '{"connection_minutes":{"block":100000,"cents":8},"messages":{"block":1000000,"cents":80},"transfer":{"block":1000000000,"cents":8},"storage":{"block":744000000000,"cents":8}}',
 '{"max_connections":20000,"max_connects_per_second":500,"max_publish_per_second":20000,"max_publish_per_second_per_client":500,"max_bytes_per_second":104857600,"max_payload_bytes":1048576,"max_subscriptions_per_client":100,"max_topic_levels":32,"max_retained_messages":100000,"max_session_expiry_seconds":2592000,"max_inflight":128}'),
('enterprise', 'Enterprise', 3, 99900, 2000000000, 5000000000, 5000000000000, 744000000000000,
 '{"connection_minutes":{"block":100000,"cents":5},"messages":{"block":1000000,"cents":50},"transfer":{"block":1000000000,"cents":5},"storage":{"block":744000000000,"cents":5}}',
 '{"max_connections":200000,"max_connects_per_second":2000,"max_publish_per_second":200000,"max_publish_per_second_per_client":1000,"max_bytes_per_second":1073741824,"max_payload_bytes":4194304,"max_subscriptions_per_client":200,"max_topic_levels":64,"max_retained_messages":1000000,"max_session_expiry_seconds":31536000,"max_inflight":256}');

CREATE TABLE subscriptions (
    org_id             text PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    plan_id            text NOT NULL REFERENCES plans(id),
    plan_since         timestamptz NOT NULL,           -- when the current plan took effect
    pending_plan_id    text REFERENCES plans(id),      -- a downgrade waiting for the period end
    spend_limit_cents  bigint CHECK (spend_limit_cents IS NULL OR spend_limit_cents >= 0),
    limit_action       text NOT NULL DEFAULT 'throttle' CHECK (limit_action IN ('throttle', 'suspend')),
    limited_since      timestamptz,                    -- set while the org is over its limit
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Plan changes within a period, for proration.
CREATE TABLE subscription_changes (
    id          bigserial PRIMARY KEY,
    org_id      text NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    from_plan   text NOT NULL REFERENCES plans(id),
    to_plan     text NOT NULL REFERENCES plans(id),
    effective   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscription_changes_org ON subscription_changes (org_id, effective);

CREATE TABLE invoice_counter (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    last bigint NOT NULL
);
INSERT INTO invoice_counter (last) VALUES (0);

CREATE TABLE invoices (
    id            text PRIMARY KEY,
    org_id        text NOT NULL REFERENCES orgs(id),
    number        bigint NOT NULL UNIQUE,              -- gap-free per operator
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    currency      text NOT NULL,
    total_cents   bigint NOT NULL,
    status        text NOT NULL CHECK (status IN ('open', 'paid', 'overdue', 'void')),
    finalized_at  timestamptz NOT NULL DEFAULT now(),
    due_at        timestamptz NOT NULL,
    paid_at       timestamptz,
    UNIQUE (org_id, period_start)
);

CREATE TABLE invoice_lines (
    invoice_id   text NOT NULL REFERENCES invoices(id),
    position     integer NOT NULL,
    kind         text NOT NULL,                        -- base, proration_credit, proration_charge, overage_*
    description  text NOT NULL,
    quantity     bigint NOT NULL,
    unit         text NOT NULL,
    amount_cents bigint NOT NULL,
    PRIMARY KEY (invoice_id, position)
);

-- Finalised invoices are immutable: lines never change, and an invoice only
-- moves between payment states.
-- +goose StatementBegin
CREATE FUNCTION invoices_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'finalised invoices cannot be deleted' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.id <> OLD.id OR NEW.org_id <> OLD.org_id OR NEW.number <> OLD.number
       OR NEW.period_start <> OLD.period_start OR NEW.period_end <> OLD.period_end
       OR NEW.currency <> OLD.currency OR NEW.total_cents <> OLD.total_cents
       OR NEW.finalized_at <> OLD.finalized_at THEN
        RAISE EXCEPTION 'finalised invoices are immutable' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();

-- +goose StatementBegin
CREATE FUNCTION invoice_lines_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'invoice lines are immutable' USING ERRCODE = 'check_violation';
END $$;
-- +goose StatementEnd
CREATE TRIGGER invoice_lines_immutable BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoice_lines_immutable();

-- +goose Down
DROP TABLE invoice_lines;
DROP TABLE invoices;
DROP FUNCTION invoice_lines_immutable;
DROP FUNCTION invoices_immutable;
DROP TABLE invoice_counter;
DROP TABLE subscription_changes;
DROP TABLE subscriptions;
DROP TABLE plans;
