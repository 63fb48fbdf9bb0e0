-- +goose Up
-- One row per prompt run, written when the run ends. The id is the response
-- id ("resp_…"), which is also the run's Temporal workflow id, so a row and
-- the run's history find each other.
CREATE TABLE runs (
    id                text PRIMARY KEY,
    project_id        uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- No foreign key: a run outlives its prompt, so usage and history stay
    -- when a prompt is deleted. NULL for an unsaved playground document.
    prompt_id         uuid,
    prompt_version    integer,
    -- The prompt deployment the caller named; '' in the playground.
    deployment        text NOT NULL DEFAULT '',
    -- The model deployment that served the run.
    model             text NOT NULL DEFAULT '',
    source            text NOT NULL,
    status            text NOT NULL CHECK (status IN ('completed', 'failed', 'incomplete')),
    -- What the caller sent: text, variables (defaults applied when they
    -- validated), input items, instructions.
    input             jsonb NOT NULL,
    -- The messages sent on the first model call; NULL when the run failed
    -- before rendering.
    rendered_messages jsonb,
    -- The final text, parsed structured output and function calls.
    output            jsonb,
    -- Each model call: call number, attempt, latency_ms, usage,
    -- finish_reason, upstream model, error.
    model_calls       jsonb NOT NULL DEFAULT '[]'::jsonb,
    input_tokens      bigint NOT NULL DEFAULT 0,
    output_tokens     bigint NOT NULL DEFAULT 0,
    -- Wall time of the whole run, start to finish.
    latency_ms        bigint NOT NULL DEFAULT 0,
    -- {"code", "message", "param"} of a failed run.
    error             jsonb,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL
);
CREATE INDEX runs_project_created_idx ON runs (project_id, created_at DESC, id);
CREATE INDEX runs_project_status_created_idx ON runs (project_id, status, created_at DESC, id);
CREATE INDEX runs_prompt_created_idx ON runs (prompt_id, prompt_version, created_at DESC, id)
    WHERE prompt_id IS NOT NULL;
CREATE INDEX runs_created_idx ON runs (created_at DESC, id);

-- +goose Down
DROP TABLE runs;
