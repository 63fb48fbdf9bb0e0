-- +goose Up
-- A dataset: rows of input for a prompt, each with what its output should
-- be. Rows are numbered from 0 in the order they were added.
CREATE TABLE datasets (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- How many rows it has: the next row's position.
    row_count   integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT datasets_project_name_key UNIQUE (project_id, name)
);
CREATE INDEX datasets_project_created_idx ON datasets (project_id, created_at DESC, id);

CREATE TABLE dataset_rows (
    dataset_id      uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    position        integer NOT NULL CHECK (position >= 0),
    -- The input: text for a text prompt, or variables for a structured one.
    text            text,
    variables       jsonb,
    -- What the output should be: a JSON string for a text output, any JSON
    -- value for a structured one; NULL when the row says nothing of it.
    expected_output jsonb,
    -- The checks as given, compiled again when a run is scored.
    checks          jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- The past run the row was made from, if any.
    run_id          text,
    PRIMARY KEY (dataset_id, position),
    CONSTRAINT dataset_rows_one_input CHECK ((text IS NULL) <> (variables IS NULL))
);

-- An evaluation: every row of a dataset (as it stood at the start) run
-- against each candidate prompt.
CREATE TABLE evaluations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id  uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    dataset_id  uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    -- The candidates as they run: [{prompt_id, version} | {document}].
    candidates  jsonb NOT NULL,
    tools       text NOT NULL,
    parallelism integer NOT NULL CHECK (parallelism > 0),
    row_count   integer NOT NULL CHECK (row_count >= 0),
    status      text NOT NULL CHECK (status IN ('running', 'completed', 'canceled', 'failed')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX evaluations_dataset_created_idx ON evaluations (dataset_id, created_at DESC, id);
CREATE INDEX evaluations_running_idx ON evaluations (dataset_id) WHERE status = 'running';

-- One scored run of an evaluation: a row against a candidate.
CREATE TABLE evaluation_results (
    evaluation_id uuid NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
    row_position  integer NOT NULL,
    candidate     integer NOT NULL,
    run_id        text NOT NULL,
    -- The run's status (completed, failed, incomplete).
    run_status    text NOT NULL,
    -- passed, failed or not_applicable (a text output, or no reply checked).
    validation    text NOT NULL,
    -- The run completed, its output is valid and every check passed.
    passed        boolean NOT NULL,
    -- Each check: [{name, type, passed, message}].
    checks        jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- The output compared across candidates: the structured output, else
    -- the text as a JSON string; NULL when the run had none.
    output        jsonb,
    error         jsonb,
    input_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    latency_ms    bigint NOT NULL DEFAULT 0,
    model_calls   integer NOT NULL DEFAULT 0,
    scored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (evaluation_id, row_position, candidate)
);

-- +goose Down
DROP TABLE evaluation_results;
DROP TABLE evaluations;
DROP TABLE dataset_rows;
DROP TABLE datasets;
