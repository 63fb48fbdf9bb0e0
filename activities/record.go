package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/sdk/activity"

	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/runstream"
)

// RunRecord is one finished run, as the runs table keeps it.
type RunRecord struct {
	// ID is the response id, also the workflow id.
	ID        string    `json:"id"`
	ProjectID uuid.UUID `json:"project_id"`
	// PromptID and PromptVersion are zero for an unsaved document; they are
	// stored as NULL then.
	PromptID      uuid.UUID `json:"prompt_id"`
	PromptVersion int32     `json:"prompt_version"`
	// Deployment is the prompt deployment the caller named, if any.
	Deployment string `json:"deployment"`
	// Model is the model deployment that served the run.
	Model  string   `json:"model"`
	Source string   `json:"source"`
	Status string   `json:"status"`
	Input  RunInput `json:"input"`
	// RenderedMessages are the messages of the first model call; nil when
	// the run failed before rendering.
	RenderedMessages []chat.Message `json:"rendered_messages,omitempty"`
	// Output is the run's output as JSON, nil when there is none.
	Output     json.RawMessage `json:"output,omitempty"`
	ModelCalls []ModelCall     `json:"model_calls"`
	// ToolCalls are the connection tool calls (run.ToolCall) as a
	// JSON list; nil when there were none.
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
	// InputTokens and OutputTokens are summed over the model calls.
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	// LatencyMS is the run's wall time.
	LatencyMS int64 `json:"latency_ms"`
	// ToolListings are what each connection listed for the run
	// ([]ToolListing as JSON); nil when it listed none.
	ToolListings json.RawMessage `json:"tool_listings,omitempty"`
	// DocumentKey is the state store key of the document that ran, empty
	// when it is a saved version as it is (run.Input.DocumentKey).
	DocumentKey string `json:"document_key,omitempty"`
	// ReplayOf is the run this run replays, if any.
	ReplayOf string `json:"replay_of,omitempty"`
	// Error is the run's error as JSON, nil when it did not fail.
	Error      json.RawMessage   `json:"error,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	FinishedAt time.Time         `json:"finished_at"`

	// TurnSubject, when set, is where RecordRun announces Turn (a
	// run.Turn as JSON) once the row is written: a
	// runstream.TypeTurnEnded event, best effort.
	TurnSubject string          `json:"turn_subject,omitempty"`
	Turn        json.RawMessage `json:"turn,omitempty"`
	// EventKey signs the announcement on TurnSubject
	// (run.Input.EventKey); empty, it goes unsigned. It is not written to
	// the row.
	EventKey string `json:"event_key,omitempty"`
}

// RunInput is what the caller gave a run.
type RunInput struct {
	Text string `json:"text,omitempty"`
	// Variables are the structured input, with defaults applied when the
	// input validated.
	Variables    map[string]any  `json:"variables,omitempty"`
	InputItems   json.RawMessage `json:"input_items,omitempty"`
	Instructions string          `json:"instructions,omitempty"`
}

// ModelCall is one model call of a run.
type ModelCall struct {
	// Call numbers the run's calls from 1; repairs count.
	Call int `json:"call"`
	// Attempt is the activity attempt that answered; 0 when none did.
	Attempt      int32      `json:"attempt,omitempty"`
	LatencyMS    int64      `json:"latency_ms"`
	Usage        chat.Usage `json:"usage"`
	FinishReason string     `json:"finish_reason,omitempty"`
	// Model is the model the upstream says answered.
	Model string `json:"model,omitempty"`
	// UpstreamModel is the model the deployment asked its upstream for.
	UpstreamModel string `json:"upstream_model,omitempty"`
	// Error is why the call failed, in the run error's words.
	Error string `json:"error,omitempty"`
	// Strict, set for a call that asked for a structured output, says
	// whether its schema went as strict; StrictReason says why not.
	Strict       *bool  `json:"strict,omitempty"`
	StrictReason string `json:"strict_reason,omitempty"`
	// Rejected are the problems the output check found in the call's
	// reply ("output.total: must satisfy the rule …"), which the repair
	// that followed quoted back to the model.
	Rejected []string `json:"rejected,omitempty"`
}

// RecordRun writes the run's row. Writing the same run again replaces the
// row, so a retried attempt is harmless.
func (a *Activities) RecordRun(ctx context.Context, r RunRecord) error {
	if _, err := a.writeRun(ctx, r, false); err != nil {
		return err
	}
	if r.TurnSubject != "" {
		a.announce(ctx, r.ID, r.TurnSubject, r.EventKey, runstream.Event{Type: runstream.TypeTurnEnded, Output: r.Turn})
	}
	return nil
}

// announce publishes ev, the end of run runID's first turn, on subject,
// signed with key. Best effort: a caller that misses it asks the workflow
// instead.
func (a *Activities) announce(ctx context.Context, runID, subject, key string, ev runstream.Event) {
	if err := runstream.Publish(ctx, a.NATS, subject, key, ev); err != nil {
		activity.GetLogger(ctx).Warn("turn end not announced", "run", runID, "subject", subject, "err", err)
	}
}

// writeRun writes the run's row, replacing any row of the same run, or,
// with once, only when the run has none; it reports whether it wrote (a
// run of a project deleted meanwhile counts as written: its rows went with
// the project).
func (a *Activities) writeRun(ctx context.Context, r RunRecord, once bool) (wrote bool, err error) {
	if a.Pool == nil {
		return false, errors.New("record run: no database configured")
	}
	input, err := json.Marshal(r.Input)
	if err != nil {
		return false, fmt.Errorf("record run: encode input: %w", err)
	}
	calls := r.ModelCalls
	if calls == nil {
		calls = []ModelCall{}
	}
	modelCalls, err := json.Marshal(calls)
	if err != nil {
		return false, fmt.Errorf("record run: encode model calls: %w", err)
	}
	meta := r.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	metadata, err := json.Marshal(meta)
	if err != nil {
		return false, fmt.Errorf("record run: encode metadata: %w", err)
	}
	var rendered []byte
	if r.RenderedMessages != nil {
		if rendered, err = json.Marshal(r.RenderedMessages); err != nil {
			return false, fmt.Errorf("record run: encode messages: %w", err)
		}
	}
	p := dbsqlc.CreateRunParams{
		ID:               r.ID,
		ProjectID:        r.ProjectID,
		Deployment:       r.Deployment,
		Model:            r.Model,
		Source:           r.Source,
		Status:           r.Status,
		Input:            input,
		RenderedMessages: rendered,
		Output:           nullJSON(r.Output),
		ModelCalls:       modelCalls,
		ToolCalls:        []byte("[]"),
		InputTokens:      r.InputTokens,
		OutputTokens:     r.OutputTokens,
		LatencyMs:        r.LatencyMS,
		Error:            nullJSON(r.Error),
		Metadata:         metadata,
		CreatedAt:        r.CreatedAt,
		FinishedAt:       r.FinishedAt,
		Replace:          !once,
		ToolListings:     nullJSON(r.ToolListings),
	}
	if r.DocumentKey != "" {
		p.DocumentKey = &r.DocumentKey
	}
	if r.ReplayOf != "" {
		p.ReplayOf = &r.ReplayOf
	}
	if tc := nullJSON(r.ToolCalls); tc != nil {
		p.ToolCalls = tc
	}
	if r.PromptID != uuid.Nil {
		p.PromptID = &r.PromptID
		p.PromptVersion = &r.PromptVersion
	}
	n, err := dbsqlc.New(a.Pool).CreateRun(ctx, p)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" { // foreign_key_violation
		// The project was deleted during the run; its runs went with it,
		// and so does this one.
		activity.GetLogger(ctx).Warn("run of a deleted project not recorded", "run", r.ID, "project", r.ProjectID)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("record run %s: %w", r.ID, err)
	}
	return n > 0, nil
}

// RunOutput is a run's output as the runs table keeps it.
type RunOutput struct {
	Text             string          `json:"text"`
	Parsed           json.RawMessage `json:"parsed,omitempty"`
	FunctionCalls    any             `json:"function_calls,omitempty"`
	ApprovalRequests any             `json:"approval_requests,omitempty"`
	// Turns is the number of the run's turns when there was more than one.
	Turns int `json:"turns,omitempty"`
}

// AddReply makes r the row of a run whose first model call's reply res
// ended it with status, at now: the workflow records such a run the same
// way (the workflows tests hold the two to each other).
func (r *RunRecord) AddReply(res CallModelResult, status string, now time.Time) error {
	out, err := json.Marshal(RunOutput{Text: res.Content, Parsed: res.Parsed})
	if err != nil {
		return fmt.Errorf("record run: encode output: %w", err)
	}
	r.Status = status
	r.Output = out
	r.ModelCalls = append(r.ModelCalls, ModelCallOf(len(r.ModelCalls)+1, res))
	r.InputTokens += res.Usage.PromptTokens
	r.OutputTokens += res.Usage.CompletionTokens
	r.LatencyMS = now.Sub(r.CreatedAt).Milliseconds()
	r.FinishedAt = now
	return nil
}

// ModelCallOf is the record of call n of a run, which res answered.
func ModelCallOf(n int, res CallModelResult) ModelCall {
	return ModelCall{
		Call: n, Attempt: res.Attempt, LatencyMS: res.LatencyMS, Usage: res.Usage,
		FinishReason: res.FinishReason, Model: res.Model, UpstreamModel: res.UpstreamModel,
		Strict: res.Strict, StrictReason: res.StrictReason,
	}
}

// nullJSON is nil (SQL NULL) for absent or null JSON.
func nullJSON(raw json.RawMessage) []byte {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}
