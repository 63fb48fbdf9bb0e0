-- name: CreatePrompt :one
INSERT INTO prompts (project_id, name, description, tags)
VALUES (@project_id, @name, @description, @tags)
RETURNING *;

-- name: GetPrompt :one
SELECT * FROM prompts WHERE id = @id;

-- name: LockPrompt :one
-- Serializes version saves of one prompt, so each gets the next number.
SELECT * FROM prompts WHERE id = @id FOR UPDATE;

-- name: ListPrompts :many
SELECT * FROM prompts
WHERE (sqlc.narg(project_id)::uuid IS NULL OR project_id = sqlc.narg(project_id))
  AND (sqlc.narg(name_search)::text IS NULL OR name ILIKE '%' || sqlc.narg(name_search) || '%')
  AND (sqlc.narg(tag)::text IS NULL OR tags @> ARRAY[sqlc.narg(tag)::text])
ORDER BY updated_at DESC, id
LIMIT @max_rows OFFSET @skip_rows;

-- name: CountPrompts :one
SELECT count(*) FROM prompts
WHERE (sqlc.narg(project_id)::uuid IS NULL OR project_id = sqlc.narg(project_id))
  AND (sqlc.narg(name_search)::text IS NULL OR name ILIKE '%' || sqlc.narg(name_search) || '%')
  AND (sqlc.narg(tag)::text IS NULL OR tags @> ARRAY[sqlc.narg(tag)::text]);

-- name: UpdatePrompt :one
UPDATE prompts
SET name = @name, description = @description, tags = @tags, default_version = @default_version, updated_at = now()
WHERE id = @id
RETURNING *;

-- name: SetPromptLatestVersion :one
UPDATE prompts
SET latest_version = @version,
    default_version = CASE WHEN @make_default::boolean THEN @version ELSE default_version END,
    updated_at = now()
WHERE id = @id
RETURNING *;

-- name: DeletePrompt :execrows
DELETE FROM prompts WHERE id = @id;

-- name: CreatePromptVersion :one
INSERT INTO prompt_versions (prompt_id, version, note, state_key)
VALUES (@prompt_id, @version, @note, @state_key)
RETURNING *;

-- name: GetPromptVersion :one
SELECT * FROM prompt_versions WHERE prompt_id = @prompt_id AND version = @version;

-- name: ListPromptVersions :many
SELECT * FROM prompt_versions
WHERE prompt_id = @prompt_id
ORDER BY version DESC
LIMIT @max_rows OFFSET @skip_rows;

-- name: ListPromptVersionKeys :many
SELECT state_key FROM prompt_versions WHERE prompt_id = @prompt_id;

-- name: CountPromptVersions :one
SELECT count(*) FROM prompt_versions WHERE prompt_id = @prompt_id;
