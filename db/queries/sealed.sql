-- name: ListSealedDeployments :many
-- Every deployment's sealed provider key, for re-sealing under a new key
-- (`bud rotate-key`); connections have theirs in connections.sql.
SELECT id, api_key_sealed FROM deployments WHERE api_key_sealed IS NOT NULL ORDER BY id;

-- name: ResealDeployment :exec
UPDATE deployments SET api_key_sealed = @api_key_sealed WHERE id = @id;
