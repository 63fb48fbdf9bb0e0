-- +goose Up
-- A connection is what a prompt's connection tools reach: an MCP server,
-- Slack, Notion, or an HTTP API. Its settings are in clear; its credentials
-- (headers, tokens) are one AES-GCM sealed JSON object, bound to the row's
-- id, and never leave the server.
CREATE TABLE connections (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id         uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name               text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('mcp', 'slack', 'notion', 'http')),
    config             jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Sealed connection.Credentials; NULL when there are none.
    credentials_sealed bytea,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT connections_project_name_key UNIQUE (project_id, name)
);
CREATE INDEX connections_project_idx ON connections (project_id, created_at, id);

-- +goose Down
DROP TABLE connections;
