-- name: CreateDeployment :one
INSERT INTO deployments (project_id, name, kind, base_url, upstream_model, api_key_sealed, default_params, settings)
VALUES (@project_id, @name, @kind, @base_url, @upstream_model, @api_key_sealed, @default_params, @settings)
RETURNING *;

-- name: GetDeployment :one
SELECT * FROM deployments WHERE project_id = @project_id AND id = @id;

-- name: GetDeploymentByName :one
SELECT * FROM deployments WHERE project_id = @project_id AND name = @name;

-- name: ListDeployments :many
SELECT * FROM deployments
WHERE project_id = @project_id
ORDER BY created_at, id
LIMIT @max_rows OFFSET @skip_rows;

-- name: CountDeployments :one
SELECT count(*) FROM deployments WHERE project_id = @project_id;

-- name: UpdateDeployment :one
UPDATE deployments
SET name = @name,
    base_url = @base_url,
    upstream_model = @upstream_model,
    api_key_sealed = @api_key_sealed,
    default_params = @default_params,
    settings = @settings,
    updated_at = now()
WHERE project_id = @project_id AND id = @id
RETURNING *;

-- name: DeleteDeployment :execrows
DELETE FROM deployments WHERE project_id = @project_id AND id = @id;

-- name: ListDeploymentsByKind :many
SELECT * FROM deployments
WHERE project_id = @project_id AND kind = @kind
ORDER BY name;

-- name: CreatePromptDeployment :one
INSERT INTO deployments (project_id, name, kind, prompt_id, prompt_version, settings)
VALUES (@project_id, @name, 'prompt', @prompt_id, @prompt_version, @settings)
RETURNING *;

-- name: UpdatePromptDeployment :one
UPDATE deployments
SET name = @name, prompt_version = @prompt_version, settings = @settings, updated_at = now()
WHERE project_id = @project_id AND id = @id AND kind = 'prompt'
RETURNING *;
