-- +goose Up
-- An API key's own rate limit, enforced on top of each deployment's: 0 in
-- a column is no limit of that kind, and a key with all three 0 has none.
ALTER TABLE api_keys
    ADD COLUMN rate_requests_per_minute integer NOT NULL DEFAULT 0 CHECK (rate_requests_per_minute >= 0),
    ADD COLUMN rate_burst               integer NOT NULL DEFAULT 0 CHECK (rate_burst >= 0),
    ADD COLUMN rate_tokens_per_minute   bigint  NOT NULL DEFAULT 0 CHECK (rate_tokens_per_minute >= 0);

-- Gateways keep a key's limit in their key cache: a change of it notifies
-- them, as a revocation does.
DROP TRIGGER api_keys_notify_update ON api_keys;
CREATE TRIGGER api_keys_notify_update AFTER UPDATE ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
                    OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
                    OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash
                    OR OLD.project_id IS DISTINCT FROM NEW.project_id
                    OR OLD.rate_requests_per_minute IS DISTINCT FROM NEW.rate_requests_per_minute
                    OR OLD.rate_burst IS DISTINCT FROM NEW.rate_burst
                    OR OLD.rate_tokens_per_minute IS DISTINCT FROM NEW.rate_tokens_per_minute)
    EXECUTE FUNCTION bud_notify_api_key();

-- +goose Down
DROP TRIGGER api_keys_notify_update ON api_keys;
CREATE TRIGGER api_keys_notify_update AFTER UPDATE ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
                    OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
                    OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash
                    OR OLD.project_id IS DISTINCT FROM NEW.project_id)
    EXECUTE FUNCTION bud_notify_api_key();
ALTER TABLE api_keys
    DROP COLUMN rate_tokens_per_minute,
    DROP COLUMN rate_burst,
    DROP COLUMN rate_requests_per_minute;
