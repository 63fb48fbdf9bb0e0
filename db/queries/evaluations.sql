-- name: CreateEvaluation :one
INSERT INTO evaluations (project_id, dataset_id, candidates, tools, parallelism, row_count, status)
VALUES (@project_id, @dataset_id, @candidates, @tools, @parallelism, @row_count, 'running')
RETURNING *;

-- name: GetEvaluation :one
SELECT * FROM evaluations WHERE id = @id;

-- name: ListEvaluations :many
SELECT * FROM evaluations
WHERE dataset_id = @dataset_id
ORDER BY created_at DESC, id
LIMIT @max_rows OFFSET @skip_rows;

-- name: CountEvaluations :one
SELECT count(*) FROM evaluations WHERE dataset_id = @dataset_id;

-- name: FinishEvaluation :execrows
-- Ends a running evaluation; one that has ended keeps its status.
UPDATE evaluations SET status = @status, finished_at = now()
WHERE id = @id AND status = 'running';

-- name: SaveEvaluationResult :exec
-- Scoring is an activity that may run again: the same run scores the same.
INSERT INTO evaluation_results (
    evaluation_id, row_position, candidate, run_id, run_status, validation, passed, checks,
    output, error, input_tokens, output_tokens, latency_ms, model_calls
) VALUES (
    @evaluation_id, @row_position, @candidate, @run_id, @run_status, @validation, @passed, @checks,
    sqlc.narg(output), sqlc.narg(error), @input_tokens, @output_tokens, @latency_ms, @model_calls
)
ON CONFLICT (evaluation_id, row_position, candidate) DO UPDATE SET
    run_id = EXCLUDED.run_id,
    run_status = EXCLUDED.run_status,
    validation = EXCLUDED.validation,
    passed = EXCLUDED.passed,
    checks = EXCLUDED.checks,
    output = EXCLUDED.output,
    error = EXCLUDED.error,
    input_tokens = EXCLUDED.input_tokens,
    output_tokens = EXCLUDED.output_tokens,
    latency_ms = EXCLUDED.latency_ms,
    model_calls = EXCLUDED.model_calls,
    scored_at = now();

-- name: EvaluationProgress :many
SELECT candidate, count(*) AS done FROM evaluation_results
WHERE evaluation_id = @evaluation_id
GROUP BY candidate
ORDER BY candidate;

-- name: EvaluationScores :many
SELECT
    candidate,
    count(*) AS runs,
    count(*) FILTER (WHERE passed) AS passed,
    count(*) FILTER (WHERE run_status = 'completed') AS completed,
    count(*) FILTER (WHERE validation = 'passed') AS valid,
    count(*) FILTER (WHERE validation <> 'not_applicable') AS validated,
    sum(input_tokens)::bigint AS input_tokens,
    sum(output_tokens)::bigint AS output_tokens,
    sum(model_calls)::bigint AS model_calls,
    (percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms))::float8 AS latency_p50,
    (percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms))::float8 AS latency_p95
FROM evaluation_results
WHERE evaluation_id = @evaluation_id
GROUP BY candidate
ORDER BY candidate;

-- name: EvaluationCheckScores :many
SELECT
    r.candidate,
    (c.value ->> 'name')::text AS name,
    count(*) AS runs,
    count(*) FILTER (WHERE (c.value ->> 'passed')::boolean) AS passed
FROM evaluation_results r, jsonb_array_elements(r.checks) c
WHERE r.evaluation_id = @evaluation_id
GROUP BY r.candidate, c.value ->> 'name'
ORDER BY r.candidate, c.value ->> 'name';

-- name: CountEvaluationDisagreements :one
SELECT count(*) FROM (
    SELECT row_position FROM evaluation_results
    WHERE evaluation_id = @evaluation_id
    GROUP BY row_position
    HAVING count(*) > 1
       AND (count(DISTINCT passed) > 1 OR count(DISTINCT coalesce(output, 'null'::jsonb)) > 1)
) d;

-- name: EvaluationDisagreements :many
-- The rows where the candidates' verdicts or outputs differ, in order.
SELECT row_position FROM evaluation_results
WHERE evaluation_id = @evaluation_id
GROUP BY row_position
HAVING count(*) > 1
   AND (count(DISTINCT passed) > 1 OR count(DISTINCT coalesce(output, 'null'::jsonb)) > 1)
ORDER BY row_position
LIMIT @max_rows;

-- name: ListEvaluationResultsForRows :many
SELECT * FROM evaluation_results
WHERE evaluation_id = @evaluation_id AND row_position = ANY(@positions::integer[])
ORDER BY row_position, candidate;
