-- +goose Up
-- Usage in hourly rollups: one row per project, deployment, API key, prompt
-- version and hour, added to by every process's usage.Recorder in batches.
-- Days are summed from hours when read.
--
-- Deployment, key and prompt have no foreign key, as in runs: usage stays
-- when a deployment or prompt is deleted. NULL means the request had none
-- (a chat completion has no prompt, a playground run no key), and NULLS NOT
-- DISTINCT makes such rows one row each for the upsert.
CREATE TABLE usage_hourly (
    project_id      uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    deployment_id   uuid,
    api_key_id      uuid,
    prompt_id       uuid,
    prompt_version  integer,
    -- The start of the hour, UTC.
    hour            timestamptz NOT NULL CHECK (date_trunc('hour', hour, 'UTC') = hour),
    requests        bigint NOT NULL DEFAULT 0,
    input_tokens    bigint NOT NULL DEFAULT 0,
    output_tokens   bigint NOT NULL DEFAULT 0,
    errors          bigint NOT NULL DEFAULT 0,
    cache_hits      bigint NOT NULL DEFAULT 0,
    rate_limited    bigint NOT NULL DEFAULT 0,
    -- Latency of the requests that were not rate limited, in microseconds:
    -- their sum, their maximum, and how many fell in each of the 16 buckets
    -- of usage.LatencyBucketBounds (the last one unbounded). The bounds are
    -- part of the schema: changing them needs a new column.
    latency_us_sum  bigint NOT NULL DEFAULT 0,
    latency_us_max  bigint NOT NULL DEFAULT 0,
    latency_buckets bigint[] NOT NULL CHECK (cardinality(latency_buckets) = 16),
    CONSTRAINT usage_hourly_key UNIQUE NULLS NOT DISTINCT
        (project_id, hour, deployment_id, api_key_id, prompt_id, prompt_version)
);

-- +goose Down
DROP TABLE usage_hourly;
