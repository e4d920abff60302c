-- API keys may have the role 'evaluator': applications that only evaluate flags (OFREP, /api/v1/evaluate).
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('admin', 'writer', 'reader', 'ops', 'alerts', 'evaluator'));
