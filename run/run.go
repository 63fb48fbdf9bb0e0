// Package run is the contract of a prompt run, shared by everything that
// starts, executes, reads or answers one: the gateway, BudApp, the
// workflow and its activities. It holds the run's input and each turn's
// output as they travel through Temporal (JSON), the statuses, the failure
// types and their HTTP statuses. It imports nothing of Bud's, so every
// package on the run path can import it.
package run

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// WorkflowName is the registered name of the workflow that executes a run.
const WorkflowName = "PromptRun"

// TaskQueue is the task queue BudPrompt workers poll and runs start on.
const TaskQueue = "bud-prompt"

// Sources: who started a run.
const (
	SourceAPI        = "api"        // POST /v1/responses
	SourcePlayground = "playground" // BudApp's playground and compare
	SourceReplay     = "replay"     // BudApp's replay of a recorded run
)

// Input is everything one run needs. The pinned version's document travels
// in the input, so the run's history alone says exactly what ran and a
// replay needs nothing else.
type Input struct {
	// ResponseID is the workflow id and the OpenAI response id ("resp_…").
	ResponseID string    `json:"response_id"`
	ProjectID  uuid.UUID `json:"project_id"`
	// PromptID and PromptVersion name the saved version; both are zero for
	// an unsaved playground document.
	PromptID      uuid.UUID `json:"prompt_id"`
	PromptVersion int32     `json:"prompt_version"`
	// Deployment is the prompt deployment's name (the caller's prompt.id);
	// empty in the playground.
	Deployment string `json:"deployment,omitempty"`
	// DeploymentID is that deployment's id: its runs share the workers
	// under it, apart from the runs of every other deployment
	// (runs.Priority). Nil in the playground.
	DeploymentID uuid.UUID `json:"deployment_id,omitzero"`
	// MinConcurrency is the deployment's settings.min_concurrency when the
	// run started: the weight of its runs' share of the workers when runs
	// wait for them (runs.Priority).
	MinConcurrency int `json:"min_concurrency,omitzero"`
	// Document is the prompt document (prompt.Document as JSON).
	Document json.RawMessage `json:"document"`
	// Text is the text input of a text prompt.
	Text string `json:"text,omitempty"`
	// Variables is the structured input.
	Variables map[string]any `json:"variables,omitempty"`
	// InputItems are OpenAI Responses input items (messages, function_call
	// outputs) appended after the rendered messages, as a JSON list.
	InputItems json.RawMessage `json:"input_items,omitempty"`
	// Instructions, when set, is a system message put before the rendered
	// messages.
	Instructions string            `json:"instructions,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	// Background says the run was started with background: true: its
	// caller got the response at once and polls it, and may cancel it.
	Background bool   `json:"background,omitempty"`
	Source     string `json:"source"`
	// StreamSubject, when set, is the NATS subject the run publishes its
	// deltas and verdicts to as they happen (package runstream). Only a
	// streaming caller sets it; without it the run publishes nothing.
	StreamSubject string `json:"stream_subject,omitempty"`
	// DocumentKey, when set, is the state store key (statestore.ContentKey)
	// under which Document is kept for as long as the run's row: set for
	// every run whose document is not a saved version as it is, so that the
	// run can be run again after Temporal has deleted its history.
	DocumentKey string `json:"document_key,omitempty"`
	// Continues, when set, is the response id of an ended run's turn that
	// this run continues (previous_response_id): InputItems then start
	// with that run's conversation (its input, each turn's output and
	// each continue's items) before the caller's new items.
	Continues string `json:"continues,omitempty"`
	// ReplayOf, when set, is the id of the run this run replays.
	ReplayOf string `json:"replay_of,omitempty"`
	// ReplayTools says how a replay's connection tools answer:
	// ReplayToolsRecorded or ReplayToolsLive; empty for a run that is no
	// replay.
	ReplayTools string `json:"replay_tools,omitempty"`
	// TurnSubject, when set, is the NATS subject on which the run announces
	// the end of its first turn once it is recorded (runstream.TypeTurnEnded).
	// The announcement is best effort; UpdateAwaitTurn always answers.
	TurnSubject string `json:"turn_subject,omitempty"`
	// EventKey, set by a caller that subscribes to StreamSubject or
	// TurnSubject, is the key the run signs the first turn's events with
	// (runstream.NewEventKey): the caller takes only events signed with
	// it. It never goes on NATS: only the run's history holds it (here and
	// in the inputs of the activities that publish); without it the events
	// are unsigned.
	EventKey string `json:"event_key,omitempty"`
	// EndAtPause ends the run where it would pause for function outputs
	// or approvals: its turn ends incomplete, with error EndedAtPause and
	// the calls it asked for in its output. Evaluations set it, since
	// nobody answers their runs.
	EndAtPause bool `json:"end_at_pause,omitempty"`
	// Batch marks a run nobody waits on as it goes (an evaluation's): its
	// model calls run as local activities of the workflow, so that a run
	// of one call ends in one workflow task (see workflows.modelCalls).
	// It streams nothing, so it carries no StreamSubject or TurnSubject.
	Batch bool `json:"batch,omitempty"`
}

// How a replay's connection tools answer (Input.ReplayTools).
const (
	// ReplayToolsRecorded: every tool call is answered with the result the
	// replayed run recorded for the same tool and arguments, and no tool is
	// listed or called; a call the replayed run did not make fails, and no
	// call waits for approval.
	ReplayToolsRecorded = "recorded"
	// ReplayToolsLive: tools are listed and called as in any run.
	ReplayToolsLive = "live"
)

// Updates and queries of a run. A run has turns: the first starts with the
// run; a turn ends when the run finishes, or when it pauses for the
// caller's function outputs or for approvals, and the next turn starts when
// it is resumed. Each turn is one OpenAI response (TurnID).
const (
	// UpdateAwaitTurn (an int, the turn from 1) returns that turn's Turn
	// once it has ended.
	UpdateAwaitTurn = "await_turn"
	// UpdateContinue (ContinueInput) resumes a paused run with the caller's
	// input items and returns the next turn once it ends. Its validator
	// refuses (InvalidContinue), without a trace in the history, a continue
	// of a turn that is not the paused one or that leaves a call unanswered.
	UpdateContinue = "continue"
	// UpdateApprove (ApprovalDecision) decides one pending approval
	// request; when none is left and no function output is awaited, the
	// run goes on by itself.
	UpdateApprove = "approve"
	// QueryTurn (an int) returns the turn as it stands; a turn not yet
	// started is an error.
	QueryTurn = "turn"
)

// idPrefix starts every response id.
const idPrefix = "resp_"

// TurnID is the response id of turn n (from 1) of the run whose workflow id
// is runID: the run's id itself for the first, runID_n after.
func TurnID(runID string, n int) string {
	if n <= 1 {
		return runID
	}
	return runID + "_" + strconv.Itoa(n)
}

// ParseTurnID splits a response id into its run's id and turn number; ok is
// false for anything that is not a response id of Bud's.
func ParseTurnID(id string) (runID string, n int, ok bool) {
	rest, found := strings.CutPrefix(id, idPrefix)
	if !found {
		return "", 0, false
	}
	base, num, found := strings.Cut(rest, "_")
	if base == "" {
		return "", 0, false
	}
	if !found {
		return id, 1, true
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 2 || strconv.Itoa(n) != num {
		return "", 0, false
	}
	return idPrefix + base, n, true
}

// ContinueInput resumes a paused run.
type ContinueInput struct {
	// PreviousResponseID is the paused turn's response id.
	PreviousResponseID string `json:"previous_response_id"`
	// InputItems are OpenAI Responses input items as a JSON list:
	// function_call_output for every function call of the paused turn,
	// mcp_approval_response for approval requests not decided otherwise,
	// and messages, appended after them.
	InputItems json.RawMessage `json:"input_items"`
	// StreamSubject, when set, is where the next turn streams.
	StreamSubject string `json:"stream_subject,omitempty"`
	// EventKey is the key the next turn signs its events on StreamSubject
	// with, as Input.EventKey is the first turn's.
	EventKey string `json:"event_key,omitempty"`
}

// Who decided an approval (ApprovalDecision.Source).
const (
	DecidedByAPI = "api" // an mcp_approval_response item of a continue
	DecidedByApp = "app" // BudApp's approvals API
)

// ApprovalDecision decides one approval request.
type ApprovalDecision struct {
	// ID is the approval request's id (mcpr_…) or the call's id.
	ID      string `json:"id"`
	Approve bool   `json:"approve"`
	Reason  string `json:"reason,omitempty"`
	// Source says who decided: DecidedByAPI or DecidedByApp.
	Source string `json:"source,omitempty"`
}
