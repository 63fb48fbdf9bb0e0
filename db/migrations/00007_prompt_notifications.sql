-- +goose Up
-- A prompt deployment that pins no version serves its prompt's default
-- version; gateways cache that number with the deployment. This trigger
-- tells every gateway, through LISTEN bud_changes, which prompt's default
-- changed. Payload: {"t":"prompt","id":"<prompt id>"}.

-- +goose StatementBegin
CREATE FUNCTION bud_notify_prompt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bud_changes', json_build_object('t', 'prompt', 'id', OLD.id)::text);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER prompts_notify_default AFTER UPDATE ON prompts
    FOR EACH ROW WHEN (OLD.default_version IS DISTINCT FROM NEW.default_version)
    EXECUTE FUNCTION bud_notify_prompt();
CREATE TRIGGER prompts_notify_delete AFTER DELETE ON prompts
    FOR EACH ROW EXECUTE FUNCTION bud_notify_prompt();

-- +goose Down
DROP TRIGGER prompts_notify_delete ON prompts;
DROP TRIGGER prompts_notify_default ON prompts;
DROP FUNCTION bud_notify_prompt();
