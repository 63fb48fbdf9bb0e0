-- name: AddUsage :exec
-- Adds one flush of usage.Recorder: row i of the rollup is element i of
-- every array, and its 16 latency buckets are elements 16(i-1)+1 to 16i of
-- latency_buckets. A row of a deleted project is dropped: it has nowhere to
-- go. The zero UUID and version 0 stand for none (NULL).
INSERT INTO usage_hourly AS t (
    project_id, deployment_id, api_key_id, prompt_id, prompt_version, hour,
    requests, input_tokens, output_tokens, errors, cache_hits, rate_limited,
    latency_us_sum, latency_us_max, latency_buckets
)
SELECT
    u.project_id,
    nullif(u.deployment_id, '00000000-0000-0000-0000-000000000000'::uuid),
    nullif(u.api_key_id, '00000000-0000-0000-0000-000000000000'::uuid),
    nullif(u.prompt_id, '00000000-0000-0000-0000-000000000000'::uuid),
    nullif(u.prompt_version, 0),
    u.hour,
    u.requests, u.input_tokens, u.output_tokens, u.errors, u.cache_hits, u.rate_limited,
    u.latency_us_sum, u.latency_us_max,
    (@latency_buckets::bigint[])[(u.ord - 1) * 16 + 1 : u.ord * 16]
FROM (
    -- Set-returning functions in one select list advance together.
    SELECT
        unnest(@project_ids::uuid[]) AS project_id,
        unnest(@deployment_ids::uuid[]) AS deployment_id,
        unnest(@api_key_ids::uuid[]) AS api_key_id,
        unnest(@prompt_ids::uuid[]) AS prompt_id,
        unnest(@prompt_versions::integer[]) AS prompt_version,
        unnest(@hours::timestamptz[]) AS hour,
        unnest(@requests::bigint[]) AS requests,
        unnest(@input_tokens::bigint[]) AS input_tokens,
        unnest(@output_tokens::bigint[]) AS output_tokens,
        unnest(@errors::bigint[]) AS errors,
        unnest(@cache_hits::bigint[]) AS cache_hits,
        unnest(@rate_limited::bigint[]) AS rate_limited,
        unnest(@latency_us_sums::bigint[]) AS latency_us_sum,
        unnest(@latency_us_maxes::bigint[]) AS latency_us_max,
        generate_series(1, cardinality(@project_ids::uuid[])) AS ord
) AS u
WHERE EXISTS (SELECT 1 FROM projects p WHERE p.id = u.project_id)
ON CONFLICT (project_id, hour, deployment_id, api_key_id, prompt_id, prompt_version) DO UPDATE SET
    requests = t.requests + EXCLUDED.requests,
    input_tokens = t.input_tokens + EXCLUDED.input_tokens,
    output_tokens = t.output_tokens + EXCLUDED.output_tokens,
    errors = t.errors + EXCLUDED.errors,
    cache_hits = t.cache_hits + EXCLUDED.cache_hits,
    rate_limited = t.rate_limited + EXCLUDED.rate_limited,
    latency_us_sum = t.latency_us_sum + EXCLUDED.latency_us_sum,
    latency_us_max = greatest(t.latency_us_max, EXCLUDED.latency_us_max),
    latency_buckets = ARRAY(
        SELECT t.latency_buckets[i] + EXCLUDED.latency_buckets[i] FROM generate_series(1, 16) AS i ORDER BY i
    );

-- name: UsageReport :many
-- Sums a project's hourly usage from from_hour (inclusive) to to_hour
-- (exclusive) by bucket (unit 'hour' or 'day', in UTC) and by the grouping
-- asked for. An id not grouped by, or of requests without one, is the zero
-- UUID (version 0), as in AddUsage; the name of a deployment, key or
-- prompt since deleted is NULL. Rows come by bucket, then by name and id,
-- none first. At most max_rows rows.
WITH grouped AS (
    SELECT
        date_trunc(@unit::text, u.hour, 'UTC')::timestamptz AS bucket,
        coalesce(CASE WHEN @by_deployment::boolean THEN u.deployment_id END, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS deployment_id,
        coalesce(CASE WHEN @by_api_key::boolean THEN u.api_key_id END, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS api_key_id,
        coalesce(CASE WHEN @by_prompt_version::boolean THEN u.prompt_id END, '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS prompt_id,
        coalesce(CASE WHEN @by_prompt_version::boolean THEN u.prompt_version END, 0)::integer AS prompt_version,
        sum(u.requests)::bigint AS requests,
        sum(u.input_tokens)::bigint AS input_tokens,
        sum(u.output_tokens)::bigint AS output_tokens,
        sum(u.errors)::bigint AS errors,
        sum(u.cache_hits)::bigint AS cache_hits,
        sum(u.rate_limited)::bigint AS rate_limited,
        sum(u.latency_us_sum)::bigint AS latency_us_sum,
        max(u.latency_us_max)::bigint AS latency_us_max,
        ARRAY[
            sum(u.latency_buckets[1]),
            sum(u.latency_buckets[2]),
            sum(u.latency_buckets[3]),
            sum(u.latency_buckets[4]),
            sum(u.latency_buckets[5]),
            sum(u.latency_buckets[6]),
            sum(u.latency_buckets[7]),
            sum(u.latency_buckets[8]),
            sum(u.latency_buckets[9]),
            sum(u.latency_buckets[10]),
            sum(u.latency_buckets[11]),
            sum(u.latency_buckets[12]),
            sum(u.latency_buckets[13]),
            sum(u.latency_buckets[14]),
            sum(u.latency_buckets[15]),
            sum(u.latency_buckets[16])
        ]::bigint[] AS latency_buckets
    FROM usage_hourly u
    WHERE u.project_id = @project_id AND u.hour >= @from_hour AND u.hour < @to_hour
    GROUP BY 1, 2, 3, 4, 5
)
SELECT
    g.bucket, g.deployment_id, g.api_key_id, g.prompt_id, g.prompt_version,
    g.requests, g.input_tokens, g.output_tokens, g.errors, g.cache_hits, g.rate_limited,
    g.latency_us_sum, g.latency_us_max, g.latency_buckets,
    d.name AS deployment_name, k.name AS api_key_name, k.prefix AS api_key_prefix, p.name AS prompt_name
FROM grouped g
LEFT JOIN deployments d ON d.id = g.deployment_id AND d.project_id = @project_id
LEFT JOIN api_keys k ON k.id = g.api_key_id AND k.project_id = @project_id
LEFT JOIN prompts p ON p.id = g.prompt_id AND p.project_id = @project_id
ORDER BY g.bucket,
    d.name NULLS FIRST, g.deployment_id,
    k.name NULLS FIRST, g.api_key_id,
    p.name NULLS FIRST, g.prompt_id, g.prompt_version
LIMIT @max_rows;
