-- +goose Up
-- A run cancelled while it ran (a background response's cancel) is
-- recorded as such.
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('completed', 'failed', 'incomplete', 'waiting', 'cancelled'));

-- +goose Down
DELETE FROM runs WHERE status = 'cancelled';
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('completed', 'failed', 'incomplete', 'waiting'));
