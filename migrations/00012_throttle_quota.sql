-- +goose Up
-- max_throttle_seconds: a client publishing beyond its rate quotas is read
-- more slowly (back-pressure); one held back continuously for longer than
-- this is disconnected (MQTT 5 reason 0x96). Granted by the plans (30 s on
-- every plan) and copied into every instance's quotas.
UPDATE plans SET quotas = quotas || jsonb_build_object('max_throttle_seconds', 30)
WHERE NOT quotas ? 'max_throttle_seconds';
UPDATE instances i SET quotas = i.quotas || jsonb_build_object('max_throttle_seconds', (p.quotas->>'max_throttle_seconds')::bigint)
FROM plans p WHERE p.id = i.plan_id AND NOT i.quotas ? 'max_throttle_seconds';

-- +goose Down
UPDATE instances SET quotas = quotas - 'max_throttle_seconds';
UPDATE plans SET quotas = quotas - 'max_throttle_seconds';
