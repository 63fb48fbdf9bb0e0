-- name: CreateAPIKey :one
INSERT INTO api_keys (project_id, name, prefix, secret_hash, expires_at,
                      rate_requests_per_minute, rate_burst, rate_tokens_per_minute)
VALUES (@project_id, @name, @prefix, @secret_hash, @expires_at,
        @rate_requests_per_minute, @rate_burst, @rate_tokens_per_minute)
RETURNING *;

-- name: GetAPIKey :one
SELECT * FROM api_keys WHERE project_id = @project_id AND id = @id;

-- name: GetAPIKeyByHash :one
SELECT * FROM api_keys WHERE secret_hash = @secret_hash;

-- name: ListAPIKeys :many
SELECT * FROM api_keys
WHERE project_id = @project_id
ORDER BY created_at, id
LIMIT @max_rows OFFSET @skip_rows;

-- name: CountAPIKeys :one
SELECT count(*) FROM api_keys WHERE project_id = @project_id;

-- name: UpdateAPIKey :one
UPDATE api_keys
SET name = @name,
    rate_requests_per_minute = @rate_requests_per_minute,
    rate_burst = @rate_burst,
    rate_tokens_per_minute = @rate_tokens_per_minute
WHERE project_id = @project_id AND id = @id
RETURNING *;

-- name: RevokeAPIKey :one
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE project_id = @project_id AND id = @id
RETURNING *;

-- name: TouchAPIKeys :exec
-- Records the latest use of many keys at once; the gateway batches these.
UPDATE api_keys AS k
SET last_used_at = u.used_at
FROM (SELECT unnest(@ids::uuid[]) AS id, unnest(@used_at::timestamptz[]) AS used_at) AS u
WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at);
