-- A rotated key keeps working until expires_at (the rotation's grace period), then is refused.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at timestamptz;
