package workflows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/workflows"
)

var connID = uuid.MustParse("11111111-2222-4333-8444-555555555555")

// connDoc offers the model the tools of connection connID, with the given
// approval policy, and a function tool of the caller's.
func connDoc(approval any, allowMultiple bool) json.RawMessage {
	doc := map[string]any{
		"deployment": "qwen",
		"messages":   []any{map[string]any{"role": "user", "content": "{{ input }}"}},
		"tools": []any{
			map[string]any{"type": "connection", "connection_id": connID.String(), "require_approval": approval},
			map[string]any{"type": "function", "name": "get_weather", "parameters": map[string]any{"type": "object"}},
		},
		"allow_multiple_calls": allowMultiple,
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

func toolCall(id, name, args string) chat.ToolCall {
	return chat.ToolCall{ID: id, Type: "function", Function: chat.ToolCallFunction{Name: name, Arguments: args}}
}

func callsReply(calls ...chat.ToolCall) activities.CallModelResult {
	return activities.CallModelResult{FinishReason: "tool_calls", ToolCalls: calls, Attempt: 1,
		Usage: chat.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}}
}

// toolHarness mocks the connection: ResolveTools offers echo and add,
// CallTool answers from outputs (an error value fails the call).
type toolHarness struct {
	*harness
	tmu     sync.Mutex
	toolIn  []activities.CallToolInput
	outputs map[string]any
}

func newToolHarness(t *testing.T, requireApproval bool) *toolHarness {
	h := &toolHarness{harness: newHarness(t), outputs: map[string]any{}}
	h.env.OnActivity("ResolveTools", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ResolveToolsInput) (activities.ResolveToolsResult, error) {
		require.Equal(t, []string{"get_weather"}, in.Taken)
		var res activities.ResolveToolsResult
		for _, name := range []string{"echo", "add"} {
			res.Tools = append(res.Tools, chat.Tool{Type: "function", Function: chat.Function{Name: name, Parameters: json.RawMessage(`{"type":"object"}`)}})
			res.Routes = append(res.Routes, activities.ToolRoute{Name: name, ConnectionID: connID, ServerLabel: "everything", Tool: name, RequireApproval: requireApproval})
		}
		return res, nil
	})
	h.env.OnActivity("CallTool", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CallToolInput) (activities.CallToolResult, error) {
		h.tmu.Lock()
		defer h.tmu.Unlock()
		h.toolIn = append(h.toolIn, in)
		switch o := h.outputs[in.Tool].(type) {
		case error:
			return activities.CallToolResult{}, o
		case string:
			return activities.CallToolResult{Output: o, Attempt: 1, LatencyMS: 2}, nil
		}
		return activities.CallToolResult{}, fmt.Errorf("unscripted tool %s", in.Tool)
	}).Maybe()
	return h
}

// update sends an update at delay and keeps its outcome.
type updateResult struct {
	accepted bool
	err      error
	out      run.Turn
	done     bool
}

func (h *harness) update(delay time.Duration, name string, arg any) *updateResult {
	res := &updateResult{}
	h.env.RegisterDelayedCallback(func() {
		h.env.UpdateWorkflow(name, fmt.Sprintf("%s-%d", name, delay), &testsuite.TestUpdateCallback{
			OnAccept: func() { res.accepted = true },
			OnReject: func(err error) { res.err = err; res.done = true },
			OnComplete: func(v any, err error) {
				res.done, res.err = true, err
				if o, ok := v.(run.Turn); ok {
					res.out = o
				}
			},
		}, arg)
	}, delay)
	return res
}

func (h *harness) execute(t *testing.T, in run.Input) run.Turn {
	t.Helper()
	h.env.ExecuteWorkflow(run.WorkflowName, in)
	require.True(t, h.env.IsWorkflowCompleted())
	require.NoError(t, h.env.GetWorkflowError())
	var out run.Turn
	require.NoError(t, h.env.GetWorkflowResult(&out))
	return out
}

func TestFunctionCallsPauseAndContinueTheSameRun(t *testing.T) {
	h := newHarness(t)
	h.replies(t,
		callsReply(toolCall("call_a", "get_weather", `{"city":"Paris"}`), toolCall("call_b", "get_weather", `{"city":"Oslo"}`)),
		"Paris 21°C, Oslo 9°C.",
	)
	in := textInput("Weather in Paris and Oslo?")
	in.Document = json.RawMessage(toolDoc)

	first := h.update(0, run.UpdateAwaitTurn, 1)
	missing := h.update(time.Second, run.UpdateContinue, run.ContinueInput{
		PreviousResponseID: "resp_test",
		InputItems:         json.RawMessage(`[{"type":"function_call_output","call_id":"call_a","output":"21°C"}]`),
	})
	wrongTurn := h.update(2*time.Second, run.UpdateContinue, run.ContinueInput{PreviousResponseID: "resp_other"})
	cont := h.update(3*time.Second, run.UpdateContinue, run.ContinueInput{
		PreviousResponseID: "resp_test",
		InputItems: json.RawMessage(`[{"type":"function_call_output","call_id":"call_b","output":"9°C"},
		  {"type":"function_call_output","call_id":"call_a","output":"21°C"}]`),
	})
	out := h.execute(t, in)

	require.True(t, first.done)
	require.NoError(t, first.err)
	require.Equal(t, "resp_test", first.out.ResponseID)
	require.True(t, first.out.Waiting)
	require.Equal(t, run.StatusCompleted, first.out.Status)
	require.Equal(t, []run.FunctionCall{
		{CallID: "call_a", Name: "get_weather", Arguments: `{"city":"Paris"}`},
		{CallID: "call_b", Name: "get_weather", Arguments: `{"city":"Oslo"}`},
	}, first.out.FunctionCalls)

	require.ErrorContains(t, missing.err, `no function_call_output for call "call_b"`)
	require.False(t, missing.accepted)
	require.ErrorContains(t, wrongTurn.err, "is not the run's latest")

	require.NoError(t, cont.err)
	require.Equal(t, "resp_test_2", cont.out.ResponseID)
	require.Equal(t, "resp_test", cont.out.PreviousResponseID)
	require.Equal(t, "Paris 21°C, Oslo 9°C.", cont.out.Text)
	require.False(t, cont.out.Waiting)
	require.Equal(t, cont.out, out)

	require.Len(t, h.calls, 2)
	msgs := h.calls[1].Messages
	require.Len(t, msgs, 4)
	require.Equal(t, "assistant", msgs[1].Role)
	require.Len(t, msgs[1].ToolCalls, 2)
	require.Equal(t, chat.Message{Role: "tool", ToolCallID: "call_a", Content: "21°C"}, msgs[2], "outputs go back in the reply's order")
	require.Equal(t, chat.Message{Role: "tool", ToolCallID: "call_b", Content: "9°C"}, msgs[3])

	require.Len(t, h.records, 2, "recorded when paused and when done")
	require.Equal(t, run.StatusWaiting, h.records[0].Status)
	require.Equal(t, []chat.Tool{{Type: "function", Function: chat.Function{
		Name: "get_weather", Description: "Weather for a city",
		Parameters: json.RawMessage(`{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`),
	}}}, normalizeTools(t, h.calls[0].Tools), "the document's function tool is offered as OpenAI's")
	require.JSONEq(t, `{"text": "", "function_calls": [
	  {"call_id": "call_a", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
	  {"call_id": "call_b", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}]}`, string(h.records[0].Output))
	require.Equal(t, run.StatusCompleted, h.records[1].Status)
	require.Len(t, h.records[1].ModelCalls, 2)
}

func TestPausedRunEndsAfterPauseTimeout(t *testing.T) {
	h := newHarness(t)
	h.replies(t, callsReply(toolCall("call_a", "get_weather", `{}`)))
	in := textInput("Weather?")
	in.Document = json.RawMessage(toolDoc)
	out := h.execute(t, in)
	require.True(t, out.Waiting)
	require.Len(t, h.records, 2)
	require.Equal(t, run.StatusFailed, h.records[1].Status)
	require.Contains(t, string(h.records[1].Error), run.PauseTimeout)
}

func TestConnectionToolsRunInParallelAndFeedBack(t *testing.T) {
	h := newToolHarness(t, false)
	h.outputs["echo"] = "Echo: hi"
	h.outputs["add"] = "The sum of 2 and 3 is 5."
	h.replies(t,
		callsReply(toolCall("c1", "echo", `{"message":"hi"}`), toolCall("c2", "add", `{"a":2,"b":3}`)),
		"hi, and 5",
	)
	in := textInput("go")
	in.Document = connDoc("never", true)
	out := h.run(t, in)

	require.Equal(t, run.StatusCompleted, out.Status)
	require.Equal(t, "hi, and 5", out.Text)
	require.Len(t, h.toolIn, 2)
	require.Equal(t, connID, h.toolIn[0].ConnectionID)
	names := []string{h.calls[0].Tools[0].Function.Name, h.calls[0].Tools[1].Function.Name, h.calls[0].Tools[2].Function.Name}
	require.Equal(t, []string{"get_weather", "echo", "add"}, names)
	msgs := h.calls[1].Messages
	require.Equal(t, chat.Message{Role: "tool", ToolCallID: "c1", Content: "Echo: hi"}, msgs[2])
	require.Equal(t, chat.Message{Role: "tool", ToolCallID: "c2", Content: "The sum of 2 and 3 is 5."}, msgs[3])
	require.Len(t, out.ToolCalls, 2)
	require.Equal(t, "everything", out.ToolCalls[0].ServerLabel)
	require.Equal(t, "Echo: hi", out.ToolCalls[0].Output)

	var recorded []run.ToolCall
	require.NoError(t, json.Unmarshal(h.record().ToolCalls, &recorded))
	require.Len(t, recorded, 2)
	require.Equal(t, `{"a":2,"b":3}`, recorded[1].Arguments)
}

func TestToolFailureIsToldToTheModel(t *testing.T) {
	h := newToolHarness(t, false)
	h.outputs["echo"] = temporal.NewNonRetryableApplicationError("rejected", run.ToolRejected, nil,
		run.Failure{Message: `connection "everything": unknown tool`})
	h.replies(t, callsReply(toolCall("c1", "echo", `{}`), toolCall("c2", "nope", `{}`)), "sorry")
	in := textInput("go")
	in.Document = connDoc("never", true)
	out := h.run(t, in)
	require.Equal(t, "sorry", out.Text)
	msgs := h.calls[1].Messages
	require.Equal(t, `Error: connection "everything": unknown tool`, msgs[2].Content)
	require.Equal(t, `Error: there is no tool named "nope"`, msgs[3].Content)
	require.Len(t, h.toolIn, 1, "a rejected call is not retried")
}

func TestOneModelCallPerTurnWithoutMultipleCalls(t *testing.T) {
	h := newToolHarness(t, false)
	h.outputs["echo"] = "Echo: hi"
	h.replies(t, callsReply(toolCall("c1", "echo", `{"message":"hi"}`)))
	in := textInput("go")
	in.Document = connDoc("never", false)
	out := h.run(t, in)
	require.Equal(t, run.StatusCompleted, out.Status)
	require.Len(t, h.calls, 1)
	require.Len(t, out.ToolCalls, 1)
	require.Equal(t, "Echo: hi", out.ToolCalls[0].Output)
}

func TestApprovalPausesUntilApproved(t *testing.T) {
	h := newToolHarness(t, true)
	h.outputs["add"] = "5"
	h.replies(t, callsReply(toolCall("c1", "add", `{"a":2,"b":3}`), toolCall("c2", "echo", `{"message":"x"}`)), "done")
	in := textInput("go")
	in.Document = connDoc("always", true)

	first := h.update(0, run.UpdateAwaitTurn, 1)
	unknown := h.update(time.Hour, run.UpdateApprove, run.ApprovalDecision{ID: "mcpr_zzz", Approve: true})
	approve := h.update(2*time.Hour, run.UpdateApprove, run.ApprovalDecision{ID: "mcpr_c1", Approve: true})
	twice := h.update(3*time.Hour, run.UpdateApprove, run.ApprovalDecision{ID: "c1", Approve: false})
	reject := h.update(4*time.Hour, run.UpdateApprove, run.ApprovalDecision{ID: "c2", Approve: false, Reason: "not today"})
	second := h.update(3*time.Hour+time.Minute, run.UpdateAwaitTurn, 2)
	out := h.execute(t, in)

	require.NoError(t, first.err)
	require.True(t, first.out.Waiting)
	require.Equal(t, []run.ApprovalRequest{
		{ID: "mcpr_c1", CallID: "c1", Name: "add", ServerLabel: "everything", Arguments: `{"a":2,"b":3}`},
		{ID: "mcpr_c2", CallID: "c2", Name: "echo", ServerLabel: "everything", Arguments: `{"message":"x"}`},
	}, first.out.ApprovalRequests)
	require.ErrorContains(t, unknown.err, `no approval request "mcpr_zzz"`)
	require.NoError(t, approve.err)
	require.ErrorContains(t, twice.err, "already approved")
	require.NoError(t, reject.err)
	require.NoError(t, second.err)
	require.Equal(t, "done", second.out.Text)
	require.Equal(t, "done", out.Text)

	require.Len(t, h.toolIn, 1, "only the approved call runs")
	require.Equal(t, "add", h.toolIn[0].Tool)
	msgs := h.calls[1].Messages
	require.Equal(t, "5", msgs[2].Content)
	require.Equal(t, "The user rejected this tool call. Reason: not today", msgs[3].Content)
	require.Len(t, out.ToolCalls, 2)
	require.True(t, *out.ToolCalls[0].Approved)
	require.False(t, *out.ToolCalls[1].Approved)
}

func TestApprovalResponsesInAContinue(t *testing.T) {
	h := newToolHarness(t, true)
	h.outputs["echo"] = "Echo: x"
	h.replies(t, callsReply(toolCall("c1", "echo", `{"message":"x"}`)), "ok")
	in := textInput("go")
	in.Document = connDoc("always", true)
	cont := h.update(time.Minute, run.UpdateContinue, run.ContinueInput{
		PreviousResponseID: "resp_test",
		InputItems:         json.RawMessage(`[{"type":"mcp_approval_response","approval_request_id":"mcpr_c1","approve":true}]`),
		StreamSubject:      "bud.runs.resp_test_2",
	})
	out := h.execute(t, in)
	require.NoError(t, cont.err)
	require.Equal(t, "ok", cont.out.Text)
	require.Equal(t, "ok", out.Text)
	require.Len(t, h.toolIn, 1)
	// The continued turn streams the approved call, naming its request.
	var started []string
	for _, ev := range h.events {
		if ev.Event.Type == runstream.TypeToolCall || ev.Event.Type == runstream.TypeToolResult {
			require.Equal(t, "bud.runs.resp_test_2", ev.Subject)
			started = append(started, ev.Event.Type+" "+ev.Event.Tool.ApprovalRequestID)
		}
	}
	require.Equal(t, []string{"tool_call mcpr_c1", "tool_result mcpr_c1"}, started)
}

func TestUnreachableConnectionFailsTheRun(t *testing.T) {
	h := newHarness(t)
	h.env.OnActivity("ResolveTools", mock.Anything, mock.Anything).Return(activities.ResolveToolsResult{},
		temporal.NewNonRetryableApplicationError("x", run.ToolRejected, nil, run.Failure{Message: `connection "everything": refused the credentials`}))
	in := textInput("go")
	in.Document = connDoc("never", true)
	out := h.run(t, in)
	require.Equal(t, run.StatusFailed, out.Status)
	require.Equal(t, run.ToolsUnavailable, out.Error.Code)
	require.Contains(t, out.Error.Message, "refused the credentials")
	require.Empty(t, h.calls)
}

func TestFirstTurnIsAnnouncedWithItsRecord(t *testing.T) {
	h := newHarness(t)
	h.replies(t, "Hello there.")
	in := textInput("hello")
	in.TurnSubject = runstream.Subject(in.ResponseID)

	out := h.run(t, in)

	rec := h.record()
	require.Equal(t, in.TurnSubject, rec.TurnSubject, "RecordRun announces the turn once the row is written")
	var turn run.Turn
	require.NoError(t, json.Unmarshal(rec.Turn, &turn))
	require.Equal(t, out, turn, "the announced turn is the run's answer")
	require.Empty(t, h.events, "no other event is published for a run that does not stream")
}

func TestRunWithoutTurnSubjectAnnouncesNothing(t *testing.T) {
	h := newHarness(t)
	h.replies(t, "Hello there.")

	h.run(t, textInput("hello"))

	rec := h.record()
	require.Empty(t, rec.TurnSubject)
	require.Empty(t, rec.Turn)
}

func TestPausedFirstTurnIsAnnouncedOnce(t *testing.T) {
	h := newHarness(t)
	h.replies(t,
		callsReply(toolCall("call_a", "get_weather", `{"city":"Paris"}`)),
		"Paris 21°C.",
	)
	in := textInput("Weather in Paris?")
	in.Document = json.RawMessage(toolDoc)
	in.TurnSubject = runstream.Subject(in.ResponseID)
	cont := h.update(time.Second, run.UpdateContinue, run.ContinueInput{
		PreviousResponseID: "resp_test",
		InputItems:         json.RawMessage(`[{"type":"function_call_output","call_id":"call_a","output":"21°C"}]`),
	})

	h.execute(t, in)

	require.NoError(t, cont.err)
	require.Len(t, h.records, 2)
	require.Equal(t, in.TurnSubject, h.records[0].TurnSubject, "the pause ends the first turn")
	var turn run.Turn
	require.NoError(t, json.Unmarshal(h.records[0].Turn, &turn))
	require.Equal(t, "resp_test", turn.ResponseID)
	require.True(t, turn.Waiting)
	require.Len(t, turn.FunctionCalls, 1)
	require.Empty(t, h.records[1].TurnSubject, "a continued turn is answered by its update")
	require.Empty(t, h.records[1].Turn)
	require.NotNil(t, h.calls[0].Announce, "the first call may end the first turn")
	require.Nil(t, h.calls[1].Announce, "a continued turn's call does not")
}

func TestPauseTimeoutIsNotAnnouncedAgain(t *testing.T) {
	h := newHarness(t)
	h.replies(t, callsReply(toolCall("call_a", "get_weather", `{}`)))
	in := textInput("Weather?")
	in.Document = json.RawMessage(toolDoc)
	in.TurnSubject = runstream.Subject(in.ResponseID)

	h.execute(t, in)

	require.Len(t, h.records, 2)
	require.Equal(t, in.TurnSubject, h.records[0].TurnSubject, "the paused first turn is announced")
	require.Empty(t, h.records[1].TurnSubject, "the timeout ends the run, not a turn anyone waits on")
	require.Empty(t, h.records[1].Turn)
}

// modelReply is the reply the harness gives for a string.
func modelReply(content string) activities.CallModelResult {
	return activities.CallModelResult{Content: content, FinishReason: "stop", Attempt: 1,
		Usage: chat.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}, LatencyMS: 7, Model: "Qwen/Qwen3-32B"}
}

// TestFirstCallEndsTheRunItself: a first model call whose reply ends the
// run records it and announces it (as activities.CallModel does with an
// Announcement); the workflow then writes nothing more, and the row and
// the turn the call made are the ones the workflow makes itself.
func TestFirstCallEndsTheRunItself(t *testing.T) {
	structured := structuredInput(structuredDoc(true, 2), map[string]any{"name": "Ada", "age": 36})
	for _, c := range []struct {
		name  string
		in    run.Input
		reply activities.CallModelResult
	}{
		{"text", textInput("hello"), modelReply("Hello there.")},
		{"cut off", textInput("hello"), func() activities.CallModelResult { r := modelReply("Hello th"); r.FinishReason = "length"; return r }()},
		{"structured", structured, modelReply(`{"summary": "Ada, a mathematician.", "score": 9}`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			var an *activities.Announcement
			var rec activities.RunRecord
			var sent activities.CallModelResult
			h.env.OnActivity("CallModel", mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.CallModelInput) (activities.CallModelResult, error) {
				an, sent = in.Announce, c.reply
				if an != nil {
					// What CallModel does with the announcement.
					status, ends := sent.EndsTurn()
					require.True(t, ends)
					if an.Document != nil && status == run.StatusCompleted {
						check, err := (&activities.Activities{}).CheckOutput(ctx, activities.CheckOutputInput{Document: an.Document, Content: sent.Content})
						require.NoError(t, err)
						require.True(t, check.Valid)
						sent.Parsed = check.Parsed
					}
					var err error
					rec, err = an.RunRecord(in.Messages, sent, status, time.Now())
					require.NoError(t, err)
					sent.Recorded = true
				}
				return sent, nil
			})
			in := c.in
			in.TurnSubject = runstream.Subject(in.ResponseID)

			out := h.execute(t, in)

			require.NotNil(t, an, "the first call may end the run")
			require.Equal(t, in.TurnSubject, an.Subject)
			require.Equal(t, c.name == "structured", an.Document != nil, "a structured reply is checked against the document")
			require.Empty(t, h.records, "the model call recorded the run")
			raw, err := json.Marshal(sent)
			require.NoError(t, err)
			turn, ok := workflows.AnnouncedTurn(runstream.Event{Type: runstream.TypeTurnEnded, Output: an.Turn, Reply: raw})
			require.True(t, ok)
			require.WithinDuration(t, out.FinishedAt, turn.FinishedAt, time.Second)
			turn.FinishedAt = out.FinishedAt
			require.Equal(t, out, turn, "the announced turn is the run's answer")

			// The same run, recorded by the workflow.
			h2 := newHarness(t)
			h2.env.OnActivity("CallModel", mock.Anything, mock.Anything).Return(c.reply, nil)
			plain := in
			plain.TurnSubject = ""
			own := h2.run(t, plain)
			own.StartedAt, own.FinishedAt = out.StartedAt, out.FinishedAt // two test clocks
			require.Equal(t, out, own, "the run's answer is the workflow's own")
			want := h2.record()
			for _, r := range []*activities.RunRecord{&rec, &want} {
				r.LatencyMS, r.CreatedAt, r.FinishedAt = 0, time.Time{}, time.Time{}
			}
			require.Equal(t, want, rec, "the call writes the row the workflow writes")
		})
	}
}

// TestInvalidStructuredFirstReplyIsRepairedByTheWorkflow: a structured
// first reply that fails its checks is not ended by the call (CallModel
// leaves it unrecorded): the workflow checks it, repairs it and records the
// run.
func TestInvalidStructuredFirstReplyIsRepairedByTheWorkflow(t *testing.T) {
	h := newHarness(t)
	h.replies(t, `{"summary": "Ada", "score": 42}`, `{"summary": "Ada, a mathematician.", "score": 9}`)
	in := structuredInput(structuredDoc(true, 2), map[string]any{"name": "Ada", "age": 36})
	in.TurnSubject = runstream.Subject(in.ResponseID)

	out := h.run(t, in)

	require.Equal(t, run.StatusCompleted, out.Status)
	require.Equal(t, 2, out.ModelCalls)
	require.JSONEq(t, `{"summary": "Ada, a mathematician.", "score": 9}`, string(out.Parsed))
	require.NotNil(t, h.calls[0].Announce.Document, "the first call could have ended it")
	require.Nil(t, h.calls[1].Announce, "a repair call does not")
	require.Equal(t, in.TurnSubject, h.record().TurnSubject, "RecordRun announces it")
}

func TestAnnouncedTurnReadsBothForms(t *testing.T) {
	turn := run.Turn{ResponseID: "resp_a", Turn: 1, Status: run.StatusCompleted, Text: "Hi", ModelCalls: 1}
	raw, err := json.Marshal(turn)
	require.NoError(t, err)
	got, ok := workflows.AnnouncedTurn(runstream.Event{Type: runstream.TypeTurnEnded, Output: raw})
	require.True(t, ok)
	require.Equal(t, turn, got)

	calls, err := json.Marshal(callsReply(toolCall("call_a", "get_weather", `{}`)))
	require.NoError(t, err)
	_, ok = workflows.AnnouncedTurn(runstream.Event{Type: runstream.TypeTurnEnded, Output: raw, Reply: calls})
	require.False(t, ok, "a reply that calls tools ends no turn")
	_, ok = workflows.AnnouncedTurn(runstream.Event{Type: runstream.TypeTurnEnded, Output: raw, Reply: []byte("{")})
	require.False(t, ok)
	_, ok = workflows.AnnouncedTurn(runstream.Event{Type: runstream.TypeDelta, Output: raw})
	require.False(t, ok)
}

func TestLargeInputIsRecordedByTheWorkflow(t *testing.T) {
	h := newHarness(t)
	h.replies(t, "Hello there.")
	in := textInput(strings.Repeat("a long document ", 20000))
	in.TurnSubject = runstream.Subject(in.ResponseID)

	h.run(t, in)

	require.Nil(t, h.calls[0].Announce, "the call's input would carry the run's input twice")
	require.Equal(t, in.TurnSubject, h.record().TurnSubject, "RecordRun announces it")
}
