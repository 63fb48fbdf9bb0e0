-- name: CreateConnection :one
INSERT INTO connections (id, project_id, name, kind, config, credentials_sealed)
VALUES (@id, @project_id, @name, @kind, @config, @credentials_sealed)
RETURNING *;

-- name: GetConnection :one
SELECT * FROM connections WHERE project_id = @project_id AND id = @id;

-- name: GetConnectionByName :one
SELECT * FROM connections WHERE project_id = @project_id AND name = @name;

-- name: ListConnections :many
SELECT * FROM connections
WHERE project_id = @project_id
ORDER BY created_at, id
LIMIT @max_rows OFFSET @skip_rows;

-- name: CountConnections :one
SELECT count(*) FROM connections WHERE project_id = @project_id;

-- name: ConnectionExists :one
SELECT EXISTS (SELECT 1 FROM connections WHERE project_id = @project_id AND id = @id);

-- name: UpdateConnection :one
UPDATE connections
SET name = @name,
    config = @config,
    credentials_sealed = @credentials_sealed,
    updated_at = now()
WHERE project_id = @project_id AND id = @id
RETURNING *;

-- name: DeleteConnection :execrows
DELETE FROM connections WHERE project_id = @project_id AND id = @id;

-- name: ListSealedConnections :many
-- Every connection's sealed credentials, for re-sealing under a new key.
SELECT id, credentials_sealed FROM connections WHERE credentials_sealed IS NOT NULL ORDER BY id;

-- name: ResealConnection :exec
UPDATE connections SET credentials_sealed = @credentials_sealed WHERE id = @id;
