-- +goose Up
-- max_backlog_seconds: how long a connected client may stay behind (QoS≥1
-- messages waiting for it or unacknowledged) before it is disconnected.
-- Granted by the plans and copied into every instance's quotas.
UPDATE plans SET quotas = quotas || jsonb_build_object('max_backlog_seconds',
    CASE id WHEN 'free' THEN 3600 WHEN 'developer' THEN 86400 WHEN 'pro' THEN 604800 ELSE 2592000 END)
WHERE NOT quotas ? 'max_backlog_seconds';
UPDATE instances i SET quotas = i.quotas || jsonb_build_object('max_backlog_seconds', (p.quotas->>'max_backlog_seconds')::bigint)
FROM plans p WHERE p.id = i.plan_id AND NOT i.quotas ? 'max_backlog_seconds';

-- +goose Down
UPDATE instances SET quotas = quotas - 'max_backlog_seconds';
UPDATE plans SET quotas = quotas - 'max_backlog_seconds';
