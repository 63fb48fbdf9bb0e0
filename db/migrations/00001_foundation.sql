-- +goose Up
CREATE TABLE projects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projects_name_key UNIQUE (name)
);

-- A deployment is what a caller names in `model`: a model upstream now, a prompt later.
CREATE TABLE deployments (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id     uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name           text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('model', 'prompt')),
    base_url       text NOT NULL DEFAULT '',
    upstream_model text NOT NULL DEFAULT '',
    -- AES-GCM sealed provider key; NULL when the upstream needs none.
    api_key_sealed bytea,
    default_params jsonb NOT NULL DEFAULT '{}'::jsonb,
    settings       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deployments_project_name_key UNIQUE (project_id, name)
);

-- Only the SHA-256 of a key's secret is kept; the secret is shown once.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id   uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT api_keys_secret_hash_key UNIQUE (secret_hash)
);
CREATE INDEX api_keys_project_id_idx ON api_keys (project_id, created_at);

-- +goose Down
DROP TABLE api_keys;
DROP TABLE deployments;
DROP TABLE projects;
