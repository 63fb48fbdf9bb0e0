-- +goose Up
-- Gateways cache keys and deployments in memory; these triggers tell every
-- gateway, through LISTEN bud_changes, exactly which entry went stale.
-- Payloads: {"t":"key","h":"<hex sha256>"} and {"t":"deployment","p":"<project id>","n":"<name>"}.

-- +goose StatementBegin
CREATE FUNCTION bud_notify_api_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('bud_changes', json_build_object('t', 'key', 'h', encode(OLD.secret_hash, 'hex'))::text);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('bud_changes', json_build_object('t', 'key', 'h', encode(NEW.secret_hash, 'hex'))::text);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION bud_notify_deployment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('bud_changes', json_build_object('t', 'deployment', 'p', OLD.project_id, 'n', OLD.name)::text);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('bud_changes', json_build_object('t', 'deployment', 'p', NEW.project_id, 'n', NEW.name)::text);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER api_keys_notify_insert_delete AFTER INSERT OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION bud_notify_api_key();
-- last_used_at changes every second under load and matters to no cache.
CREATE TRIGGER api_keys_notify_update AFTER UPDATE ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
                    OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
                    OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash
                    OR OLD.project_id IS DISTINCT FROM NEW.project_id)
    EXECUTE FUNCTION bud_notify_api_key();
CREATE TRIGGER deployments_notify AFTER INSERT OR UPDATE OR DELETE ON deployments
    FOR EACH ROW EXECUTE FUNCTION bud_notify_deployment();

-- +goose Down
DROP TRIGGER deployments_notify ON deployments;
DROP TRIGGER api_keys_notify_update ON api_keys;
DROP TRIGGER api_keys_notify_insert_delete ON api_keys;
DROP FUNCTION bud_notify_deployment();
DROP FUNCTION bud_notify_api_key();
