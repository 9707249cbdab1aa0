-- +goose Up
-- What an org may hold on each plan (0 = unlimited), with stricter values
-- while no owner of the org has verified an email address. Editable by the
-- operator like the rest of the plan; shown in GET /v1/plans.
ALTER TABLE plans ADD COLUMN limits jsonb NOT NULL DEFAULT '{}';
UPDATE plans SET limits = CASE id
  WHEN 'free' THEN '{"max_instances":10,"max_credentials_per_instance":10000,"max_api_keys":25,"max_acl_rules_per_instance":200,
    "unverified":{"max_instances":5,"max_credentials_per_instance":2000,"max_api_keys":10,"max_acl_rules_per_instance":100}}'
  WHEN 'developer' THEN '{"max_instances":25,"max_credentials_per_instance":50000,"max_api_keys":50,"max_acl_rules_per_instance":1000,
    "unverified":{"max_instances":5,"max_credentials_per_instance":2000,"max_api_keys":10,"max_acl_rules_per_instance":100}}'
  WHEN 'pro' THEN '{"max_instances":100,"max_credentials_per_instance":500000,"max_api_keys":200,"max_acl_rules_per_instance":5000,
    "unverified":{"max_instances":5,"max_credentials_per_instance":2000,"max_api_keys":10,"max_acl_rules_per_instance":100}}'
  ELSE '{"max_instances":1000,"max_credentials_per_instance":5000000,"max_api_keys":1000,"max_acl_rules_per_instance":20000,
    "unverified":{"max_instances":5,"max_credentials_per_instance":2000,"max_api_keys":10,"max_acl_rules_per_instance":100}}'
END::jsonb;

-- +goose Down
ALTER TABLE plans DROP COLUMN limits;
