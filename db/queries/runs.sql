-- name: CreateRun :execrows
-- Records a run. A run is recorded by an activity that may be retried, so
-- with replace a second write of the same id replaces the first. Without
-- it, a run that has a row already keeps it and no row is affected: the
-- first model call that ended the run wrote it, and that reply stands.
INSERT INTO runs (
    id, project_id, prompt_id, prompt_version, deployment, model, source, status,
    input, rendered_messages, output, model_calls, tool_calls, input_tokens, output_tokens,
    latency_ms, error, metadata, created_at, finished_at, document_key, tool_listings, replay_of
) VALUES (
    @id, @project_id, sqlc.narg(prompt_id), sqlc.narg(prompt_version), @deployment, @model, @source, @status,
    @input, sqlc.narg(rendered_messages), sqlc.narg(output), @model_calls, @tool_calls, @input_tokens, @output_tokens,
    @latency_ms, sqlc.narg(error), @metadata, @created_at, @finished_at,
    sqlc.narg(document_key), sqlc.narg(tool_listings), sqlc.narg(replay_of)
)
ON CONFLICT (id) DO UPDATE SET
    project_id = EXCLUDED.project_id,
    prompt_id = EXCLUDED.prompt_id,
    prompt_version = EXCLUDED.prompt_version,
    deployment = EXCLUDED.deployment,
    model = EXCLUDED.model,
    source = EXCLUDED.source,
    status = EXCLUDED.status,
    input = EXCLUDED.input,
    rendered_messages = EXCLUDED.rendered_messages,
    output = EXCLUDED.output,
    model_calls = EXCLUDED.model_calls,
    tool_calls = EXCLUDED.tool_calls,
    input_tokens = EXCLUDED.input_tokens,
    output_tokens = EXCLUDED.output_tokens,
    latency_ms = EXCLUDED.latency_ms,
    error = EXCLUDED.error,
    metadata = EXCLUDED.metadata,
    created_at = EXCLUDED.created_at,
    finished_at = EXCLUDED.finished_at,
    document_key = EXCLUDED.document_key,
    tool_listings = EXCLUDED.tool_listings,
    replay_of = EXCLUDED.replay_of
WHERE sqlc.arg(replace)::boolean;

-- name: GetRun :one
SELECT * FROM runs WHERE project_id = @project_id AND id = @id;

-- name: GetRunByID :one
-- Not scoped to a project: for the worker and administrative tools only.
SELECT * FROM runs WHERE id = @id;

-- name: ListRuns :many
SELECT * FROM runs
WHERE (sqlc.narg(project_id)::uuid IS NULL OR project_id = sqlc.narg(project_id))
  AND (sqlc.narg(prompt_id)::uuid IS NULL OR prompt_id = sqlc.narg(prompt_id))
  AND (sqlc.narg(prompt_version)::integer IS NULL OR prompt_version = sqlc.narg(prompt_version))
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status))
  AND (sqlc.narg(created_after)::timestamptz IS NULL OR created_at >= sqlc.narg(created_after))
  AND (sqlc.narg(created_before)::timestamptz IS NULL OR created_at < sqlc.narg(created_before))
ORDER BY created_at DESC, id
LIMIT @max_rows OFFSET @skip_rows;

-- name: CountRuns :one
SELECT count(*) FROM runs
WHERE (sqlc.narg(project_id)::uuid IS NULL OR project_id = sqlc.narg(project_id))
  AND (sqlc.narg(prompt_id)::uuid IS NULL OR prompt_id = sqlc.narg(prompt_id))
  AND (sqlc.narg(prompt_version)::integer IS NULL OR prompt_version = sqlc.narg(prompt_version))
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status))
  AND (sqlc.narg(created_after)::timestamptz IS NULL OR created_at >= sqlc.narg(created_after))
  AND (sqlc.narg(created_before)::timestamptz IS NULL OR created_at < sqlc.narg(created_before));

-- name: CheckRunOwnership :one
-- What a worker checks before it spends a project's credentials on a run:
-- the project exists, the prompt version is the project's, and the prompt
-- deployment is the project's and serves that prompt.
SELECT
    EXISTS (SELECT 1 FROM projects WHERE projects.id = @project_id::uuid) AS project_exists,
    EXISTS (
        SELECT 1 FROM prompts JOIN prompt_versions ON prompt_versions.prompt_id = prompts.id
        WHERE prompts.id = @prompt_id::uuid AND prompts.project_id = @project_id::uuid
          AND prompt_versions.version = @prompt_version::integer
    ) AS prompt_version_owned,
    EXISTS (
        SELECT 1 FROM deployments
        WHERE deployments.project_id = @project_id::uuid AND deployments.name = @deployment::text
          AND deployments.kind = 'prompt' AND deployments.prompt_id = @prompt_id::uuid
    ) AS deployment_serves_prompt;

-- name: GetRunToolListings :one
-- What a replay with recorded tools offers the model: the tools each
-- connection offered the original run. Not scoped to a project: for the
-- worker, whose run input names the project.
SELECT project_id, tool_listings FROM runs WHERE id = @id;

-- name: GetRunToolCalls :one
-- What a replay with recorded tools answers a call from: the calls the
-- original run made with their results. Not scoped to a project, as
-- GetRunToolListings.
SELECT project_id, tool_calls FROM runs WHERE id = @id;
