-- name: CreateDataset :one
INSERT INTO datasets (project_id, name, description)
VALUES (@project_id, @name, @description)
RETURNING *;

-- name: GetDataset :one
SELECT * FROM datasets WHERE id = @id;

-- name: LockDataset :one
-- Serializes the writes of one dataset's rows, so each gets the next
-- position, and a deletion against the evaluations that start on it.
SELECT * FROM datasets WHERE id = @id FOR UPDATE;

-- name: ListDatasets :many
SELECT * FROM datasets
WHERE project_id = @project_id
ORDER BY created_at DESC, id
LIMIT @max_rows OFFSET @skip_rows;

-- name: CountDatasets :one
SELECT count(*) FROM datasets WHERE project_id = @project_id;

-- name: SetDatasetRowCount :one
UPDATE datasets SET row_count = @row_count, updated_at = now() WHERE id = @id
RETURNING *;

-- name: InsertDatasetRows :copyfrom
INSERT INTO dataset_rows (dataset_id, position, text, variables, expected_output, checks, run_id)
VALUES (@dataset_id, @position, @text, @variables, @expected_output, @checks, @run_id);

-- name: ListDatasetRows :many
-- Rows from position first_position on, in order.
SELECT * FROM dataset_rows
WHERE dataset_id = @dataset_id AND position >= @first_position
ORDER BY position
LIMIT @max_rows;

-- name: GetDatasetRow :one
SELECT * FROM dataset_rows WHERE dataset_id = @dataset_id AND position = @position;

-- name: DeleteDataset :execrows
DELETE FROM datasets WHERE id = @id;

-- name: DatasetHasRunningEvaluation :one
SELECT EXISTS (SELECT 1 FROM evaluations WHERE dataset_id = @dataset_id AND status = 'running');

-- name: ListRunsForDataset :many
-- The past runs a dataset is made from, oldest first: their input becomes
-- a row, their output its expected output.
SELECT * FROM runs
WHERE project_id = @project_id
  AND prompt_id = @prompt_id
  AND status = @status
  AND (sqlc.narg(created_after)::timestamptz IS NULL OR created_at >= sqlc.narg(created_after))
  AND (sqlc.narg(created_before)::timestamptz IS NULL OR created_at < sqlc.narg(created_before))
ORDER BY created_at, id
LIMIT @max_rows;
