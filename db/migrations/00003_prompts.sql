-- +goose Up
-- A prompt's metadata; its documents live in the state store, one per version.
CREATE TABLE prompts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id      uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name            text NOT NULL,
    description     text NOT NULL DEFAULT '',
    tags            text[] NOT NULL DEFAULT '{}',
    default_version integer NOT NULL DEFAULT 1,
    latest_version  integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT prompts_project_name_key UNIQUE (project_id, name)
);
CREATE INDEX prompts_updated_idx ON prompts (updated_at DESC, id);
CREATE INDEX prompts_tags_idx ON prompts USING gin (tags);

-- A version row exists only once its document is stored: reads go through
-- here, so a failed save never shows a version without a body.
CREATE TABLE prompt_versions (
    prompt_id  uuid NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
    version    integer NOT NULL CHECK (version > 0),
    note       text NOT NULL DEFAULT '',
    state_key  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prompt_id, version)
);

-- A prompt deployment names a prompt; a NULL version follows the prompt's default.
ALTER TABLE deployments
    ADD COLUMN prompt_id uuid REFERENCES prompts (id) ON DELETE CASCADE,
    ADD COLUMN prompt_version integer,
    ADD CONSTRAINT deployments_prompt_kind CHECK ((kind = 'prompt') = (prompt_id IS NOT NULL));

-- +goose Down
ALTER TABLE deployments DROP CONSTRAINT deployments_prompt_kind, DROP COLUMN prompt_version, DROP COLUMN prompt_id;
DROP TABLE prompt_versions;
DROP TABLE prompts;
