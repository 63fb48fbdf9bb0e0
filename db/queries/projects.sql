-- name: CreateProject :one
INSERT INTO projects (name, description)
VALUES (@name, @description)
RETURNING *;

-- name: GetProject :one
SELECT * FROM projects WHERE id = @id;

-- name: ListProjects :many
SELECT * FROM projects
ORDER BY created_at, id
LIMIT @max_rows OFFSET @skip_rows;

-- name: CountProjects :one
SELECT count(*) FROM projects;

-- name: UpdateProject :one
UPDATE projects
SET name = @name, description = @description, updated_at = now()
WHERE id = @id
RETURNING *;

-- name: DeleteProject :execrows
DELETE FROM projects WHERE id = @id;
