package activities

// Replays with recorded tools: a replay's connection tools are listed and
// answered from what the replayed run recorded, so a what-if of a prompt
// change reaches no tool.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/run"
)

// ToolListing is what one connection offered a run: every tool it listed,
// before the prompt's allowed tools were applied, so that a replay with
// another document can offer what that document allows.
type ToolListing struct {
	ConnectionID uuid.UUID `json:"connection_id"`
	// ServerLabel is the connection's name when it was listed.
	ServerLabel string            `json:"server_label"`
	Tools       []connection.Tool `json:"tools"`
}

// RecordedToolCallInput is one call a replay's model made of a connection
// tool, to be answered from the replayed run's record.
type RecordedToolCallInput struct {
	ProjectID uuid.UUID `json:"project_id"`
	// ReplayOf is the replayed run's id.
	ReplayOf     string    `json:"replay_of"`
	ConnectionID uuid.UUID `json:"connection_id"`
	// Tool is the connection's own name of the tool.
	Tool string `json:"tool"`
	// Arguments are as the model wrote them (JSON text).
	Arguments string `json:"arguments"`
	// Occurrence numbers the replay's calls of this tool with these
	// arguments (CallKey), from 1: the n-th gets the replayed run's n-th
	// such result.
	Occurrence int `json:"occurrence"`
}

// CallKey identifies the calls of a tool with the same arguments: the
// connection, the tool's own name and the arguments as canonical JSON
// (CanonicalArguments), so that key order and spacing do not matter.
func CallKey(conn, tool, arguments string) string {
	return conn + "\x00" + tool + "\x00" + CanonicalArguments(arguments)
}

// CanonicalArguments is a call's arguments as canonical JSON: object keys
// sorted, no insignificant space, numbers as written. Empty arguments are
// "{}"; text that is not JSON is kept as it is, trimmed.
func CanonicalArguments(arguments string) string {
	raw := strings.TrimSpace(arguments)
	if raw == "" {
		return "{}"
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return raw
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return raw
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// recordedListings reads what each connection offered the replayed run
// runID.
func (a *Activities) recordedListings(ctx context.Context, project uuid.UUID, runID string) ([]ToolListing, error) {
	if a.Pool == nil {
		return nil, errors.New("recorded tools: no database configured")
	}
	row, err := dbsqlc.New(a.Pool).GetRunToolListings(ctx, runID)
	if err := recordedRunError(err, row.ProjectID, project, runID); err != nil {
		return nil, err
	}
	var listings []ToolListing
	if len(row.ToolListings) > 0 {
		if err := json.Unmarshal(row.ToolListings, &listings); err != nil {
			return nil, fmt.Errorf("recorded tools: decode the listings of run %s: %w", runID, err)
		}
	}
	return listings, nil
}

// recordedCalls reads the tool calls the replayed run runID made, with
// their results.
func (a *Activities) recordedCalls(ctx context.Context, project uuid.UUID, runID string) ([]run.ToolCall, error) {
	if a.Pool == nil {
		return nil, errors.New("recorded tools: no database configured")
	}
	row, err := dbsqlc.New(a.Pool).GetRunToolCalls(ctx, runID)
	if err := recordedRunError(err, row.ProjectID, project, runID); err != nil {
		return nil, err
	}
	var calls []run.ToolCall
	if err := json.Unmarshal(row.ToolCalls, &calls); err != nil {
		return nil, fmt.Errorf("recorded tools: decode the tool calls of run %s: %w", runID, err)
	}
	return calls, nil
}

// recordedRunError is the failure of err, reading the replayed run runID
// of owner for project: a run of another project is as absent as one of
// none (non-retryable run.ToolNotRecorded); a database error is retried.
func recordedRunError(err error, owner, project uuid.UUID, runID string) error {
	switch {
	case db.IsNoRows(err) || err == nil && owner != project:
		return temporal.NewNonRetryableApplicationError("recorded tools: no run "+runID+" in project "+project.String(), run.ToolNotRecorded, nil,
			run.Failure{Message: fmt.Sprintf("replay with recorded tools: the replayed run %s has no record", runID)})
	case err != nil:
		return fmt.Errorf("recorded tools: read run %s: %w", runID, err)
	}
	return nil
}

// recordedLister lists connections from a replayed run's listings.
type recordedLister struct {
	runID    string
	listings []ToolListing
}

func (l recordedLister) list(conn uuid.UUID) (string, []connection.Tool, error) {
	for _, li := range l.listings {
		if li.ConnectionID == conn {
			return li.ServerLabel, li.Tools, nil
		}
	}
	return "", nil, temporal.NewNonRetryableApplicationError("recorded tools: connection "+conn.String()+" not listed by run "+l.runID, run.ToolNotRecorded, nil,
		run.Failure{Message: fmt.Sprintf("replay with recorded tools: the replayed run %s did not list connection %s, so its tools cannot be offered; replay with live tools", l.runID, conn)})
}

// RecordedToolCall answers a replay's tool call with the result the
// replayed run recorded for the same connection, tool and arguments
// (compared as canonical JSON), the n-th such call getting the n-th
// result; it calls no tool. A call the replayed run did not make (or made
// fewer times) fails, non-retryable run.ToolNotRecorded, with a message
// for the model. A recorded failure is answered as a failure with the
// recorded text. Reading the record may fail retryably.
func (a *Activities) RecordedToolCall(ctx context.Context, in RecordedToolCallInput) (CallToolResult, error) {
	start := time.Now()
	calls, err := a.recordedCalls(ctx, in.ProjectID, in.ReplayOf)
	if err != nil {
		return CallToolResult{}, err
	}
	key := CallKey(in.ConnectionID.String(), in.Tool, in.Arguments)
	seen := 0
	for _, c := range calls {
		if c.Approved != nil && !*c.Approved {
			continue // rejected: never made
		}
		if CallKey(c.ConnectionID, c.Name, c.Arguments) != key {
			continue
		}
		if seen++; seen < in.Occurrence {
			continue
		}
		res := CallToolResult{Output: c.Output, LatencyMS: time.Since(start).Milliseconds(), Attempt: activity.GetInfo(ctx).Attempt}
		if c.Error != "" {
			res.Output, res.IsError = c.Error, true
		}
		return res, nil
	}
	msg := fmt.Sprintf("replay with recorded tools: the original run made no call of %q with these arguments, so this call was not made", in.Tool)
	if seen > 0 {
		msg = fmt.Sprintf("replay with recorded tools: the original run made only %d call(s) of %q with these arguments, so this one was not made", seen, in.Tool)
	}
	return CallToolResult{}, temporal.NewNonRetryableApplicationError(msg, run.ToolNotRecorded, nil, run.Failure{Message: msg})
}
