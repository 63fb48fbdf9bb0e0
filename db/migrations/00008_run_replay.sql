-- +goose Up
-- What a run needs to be run again once Temporal's retention has deleted its
-- history: the rest (input, variables, tool calls with their arguments and
-- results, the model calls) is in the row already.
--
-- document_key is the Dapr state store key ("document:sha256:<hex>") of the
-- exact document that ran, NULL when the run ran a saved version as it is
-- (prompt_id and prompt_version name it then). tool_listings is what each
-- connection offered the run, so that a replay with recorded tools lists
-- nothing from the live servers. replay_of is the run a replay replays.
ALTER TABLE runs ADD COLUMN document_key text;
ALTER TABLE runs ADD COLUMN tool_listings jsonb;
ALTER TABLE runs ADD COLUMN replay_of text;

-- +goose Down
ALTER TABLE runs DROP COLUMN replay_of;
ALTER TABLE runs DROP COLUMN tool_listings;
ALTER TABLE runs DROP COLUMN document_key;
