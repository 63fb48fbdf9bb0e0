-- +goose Up
-- A run that calls tools: each connection tool call (arguments, result or
-- error, approval, timing), and the status of a run paused for function
-- outputs or approvals.
ALTER TABLE runs ADD COLUMN tool_calls jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('completed', 'failed', 'incomplete', 'waiting'));

-- +goose Down
DELETE FROM runs WHERE status = 'waiting';
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('completed', 'failed', 'incomplete'));
ALTER TABLE runs DROP COLUMN tool_calls;
