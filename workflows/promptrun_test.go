package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/workflows"
)

const textDoc = `{
  "deployment": "qwen",
  "model_params": {"temperature": 0.2},
  "system_prompt": "You are terse.",
  "messages": [{"role": "user", "content": "Say: {{ input }}"}]
}`

// structuredDoc takes a name and an age and answers a summary and a score
// from 0 to 10. allowMultiple and limit are filled in per test.
func structuredDoc(allowMultiple bool, limit int) json.RawMessage {
	doc := map[string]any{
		"deployment": "qwen",
		"messages":   []any{map[string]any{"role": "user", "content": "Describe {{ name }}, aged {{ age }}."}},
		"input": map[string]any{"type": "structured", "variables": []any{
			map[string]any{"name": "name", "type": "string", "required": true},
			map[string]any{"name": "age", "type": "integer", "required": true, "validation": map[string]any{"basic": map[string]any{"ge": 0}}},
		}},
		"output": map[string]any{"type": "structured", "variables": []any{
			map[string]any{"name": "summary", "type": "string", "required": true},
			map[string]any{"name": "score", "type": "integer", "required": true, "validation": map[string]any{"basic": map[string]any{"ge": 0, "le": 10}}},
		}},
		"allow_multiple_calls": allowMultiple,
		"llm_retry_limit":      limit,
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

const toolDoc = `{
  "deployment": "qwen",
  "messages": [{"role": "user", "content": "{{ input }}"}],
  "tools": [{"type": "function", "name": "get_weather", "description": "Weather for a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
}`

var projectID = uuid.MustParse("6f1c3a52-6d0e-4f57-9a55-0a5b7f4c1e01")

func textInput(text string) run.Input {
	return run.Input{
		ResponseID: "resp_test", ProjectID: projectID, Document: json.RawMessage(textDoc),
		Text: text, Source: run.SourcePlayground,
	}
}

func structuredInput(doc json.RawMessage, vars map[string]any) run.Input {
	return run.Input{
		ResponseID: "resp_structured", ProjectID: projectID,
		PromptID: uuid.MustParse("0c0ffee0-0000-4000-8000-000000000001"), PromptVersion: 3, Deployment: "describer",
		Document: doc, Variables: vars, Source: run.SourceAPI,
	}
}

// harness is a workflow test environment in which PrepareRun and
// CheckOutput run for real (they touch nothing outside the process) and
// CallModel and RecordRun are mocked.
type harness struct {
	env *testsuite.TestWorkflowEnvironment

	mu      sync.Mutex
	calls   []activities.CallModelInput
	records []activities.RunRecord
	events  []activities.PublishRunEventInput
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{env: newTestEnv()}
	workflows.Register(h.env, &activities.Activities{})
	h.env.OnActivity("RecordRun", mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.RunRecord) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.records = append(h.records, r)
		return nil
	})
	h.env.OnActivity("PublishRunEvent", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PublishRunEventInput) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.events = append(h.events, in)
		return nil
	}).Maybe()
	return h
}

// replies makes CallModel answer with each reply (or error) in turn,
// recording what it was asked.
func (h *harness) replies(t *testing.T, replies ...any) {
	h.env.OnActivity("CallModel", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CallModelInput) (activities.CallModelResult, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.calls = append(h.calls, in)
		n := len(h.calls)
		if n > len(replies) {
			t.Errorf("CallModel called %d times, only %d replies scripted", n, len(replies))
			return activities.CallModelResult{}, temporal.NewNonRetryableApplicationError("unscripted", "Unscripted", nil)
		}
		switch r := replies[n-1].(type) {
		case error:
			return activities.CallModelResult{}, r
		case string:
			return activities.CallModelResult{Content: r, FinishReason: "stop", Attempt: 1,
				Usage: chat.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}, LatencyMS: 7, Model: "Qwen/Qwen3-32B"}, nil
		case activities.CallModelResult:
			return r, nil
		}
		panic("bad reply")
	})
}

// newTestEnv is a workflow test environment that logs nothing: the failures
// the tests provoke would otherwise flood the output. The environment runs
// local activities on the workflow's goroutine, so its deadlock detector
// (1 s by default) would fail a first template compile on a busy machine.
func newTestEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: time.Minute})
	return env
}

func (h *harness) run(t *testing.T, in run.Input) run.Turn {
	t.Helper()
	h.env.ExecuteWorkflow(run.WorkflowName, in)
	require.True(t, h.env.IsWorkflowCompleted())
	require.NoError(t, h.env.GetWorkflowError())
	var out run.Turn
	require.NoError(t, h.env.GetWorkflowResult(&out))
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Len(t, h.records, 1, "the run is recorded once")
	rec := h.records[0]
	require.Equal(t, in.ResponseID, rec.ID)
	require.Equal(t, out.Status, rec.Status)
	require.Equal(t, out.ModelCalls, len(rec.ModelCalls))
	require.Equal(t, out.Usage.InputTokens, rec.InputTokens)
	return out
}

func (h *harness) record() activities.RunRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.records[0]
}

func TestTextPromptMakesOneCall(t *testing.T) {
	h := newHarness(t)
	h.replies(t, "Hello there.")

	out := h.run(t, textInput("hello"))

	require.Equal(t, run.StatusCompleted, out.Status)
	require.Equal(t, "Hello there.", out.Text)
	require.Nil(t, out.Error)
	require.Equal(t, "qwen", out.Model)
	require.Equal(t, 1, out.ModelCalls)
	require.Equal(t, run.Usage{InputTokens: 10, OutputTokens: 5, TotalTokens: 15}, out.Usage)
	require.False(t, out.StartedAt.IsZero())
	require.False(t, out.FinishedAt.Before(out.StartedAt))

	require.Len(t, h.calls, 1)
	call := h.calls[0]
	require.Equal(t, projectID, call.ProjectID)
	require.Equal(t, "qwen", call.Deployment)
	require.Equal(t, []chat.Message{
		{Role: "system", Content: "You are terse."},
		{Role: "user", Content: "Say: hello"},
	}, call.Messages)
	require.JSONEq(t, `{"temperature": 0.2}`, string(call.ModelParams))
	require.Empty(t, call.ResponseFormat)
	require.Empty(t, call.Tools)

	rec := h.record()
	require.Equal(t, call.Messages, rec.RenderedMessages)
	require.Equal(t, "hello", rec.Input.Text)
	require.JSONEq(t, `{"text": "Hello there."}`, string(rec.Output))
	require.Nil(t, rec.Error)
	require.Equal(t, uuid.Nil, rec.PromptID)
	require.Equal(t, []activities.ModelCall{{Call: 1, Attempt: 1, LatencyMS: 7, FinishReason: "stop", Model: "Qwen/Qwen3-32B",
		Usage: chat.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}}}, rec.ModelCalls)
}

func TestInstructionsAndInputItems(t *testing.T) {
	h := newHarness(t)
	h.replies(t, "Sunny.")
	in := textInput("weather?")
	in.Instructions = "Answer in one word."
	in.InputItems = json.RawMessage(`[
	  {"role": "user", "content": [{"type": "input_text", "text": "And in Paris?"}]},
	  {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
	  {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
	]`)

	out := h.run(t, in)

	require.Equal(t, run.StatusCompleted, out.Status)
	require.Equal(t, []chat.Message{
		{Role: "system", Content: "Answer in one word."},
		{Role: "system", Content: "You are terse."},
		{Role: "user", Content: "Say: weather?"},
		{Role: "user", Content: "And in Paris?"},
		{Role: "assistant", ToolCalls: []chat.ToolCall{{ID: "call_1", Type: "function", Function: chat.ToolCallFunction{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}},
		{Role: "tool", ToolCallID: "call_1", Content: "sunny"},
	}, h.calls[0].Messages)
}

func TestStructuredOutputValid(t *testing.T) {
	h := newHarness(t)
	h.replies(t, `{"summary": "Ada, a mathematician.", "score": 9}`)

	out := h.run(t, structuredInput(structuredDoc(false, 0), map[string]any{"name": "Ada", "age": 36}))

	require.Equal(t, run.StatusCompleted, out.Status)
	require.Nil(t, out.Error)
	require.JSONEq(t, `{"summary": "Ada, a mathematician.", "score": 9}`, string(out.Parsed))
	require.Equal(t, 1, out.ModelCalls)

	call := h.calls[0]
	require.Equal(t, []chat.Message{{Role: "user", Content: "Describe Ada, aged 36."}}, call.Messages)
	var rf struct {
		Type       string `json:"type"`
		JSONSchema struct {
			Name   string         `json:"name"`
			Strict bool           `json:"strict"`
			Schema map[string]any `json:"schema"`
		} `json:"json_schema"`
	}
	require.NoError(t, json.Unmarshal(call.ResponseFormat, &rf))
	require.Equal(t, "json_schema", rf.Type)
	require.True(t, rf.JSONSchema.Strict)
	require.Equal(t, "object", rf.JSONSchema.Schema["type"])
	require.Contains(t, rf.JSONSchema.Schema["properties"], "score")

	rec := h.record()
	require.Equal(t, uuid.MustParse("0c0ffee0-0000-4000-8000-000000000001"), rec.PromptID)
	require.Equal(t, int32(3), rec.PromptVersion)
	require.Equal(t, "describer", rec.Deployment)
	require.Equal(t, "qwen", rec.Model)
	require.Equal(t, map[string]any{"name": "Ada", "age": float64(36)}, rec.Input.Variables)
}

func TestInvalidOutputWithoutMultipleCallsFailsAfterOneCall(t *testing.T) {
	h := newHarness(t)
	h.replies(t, `{"summary": "Ada", "score": 42}`)

	out := h.run(t, structuredInput(structuredDoc(false, 3), map[string]any{"name": "Ada", "age": 36}))

	require.Equal(t, run.StatusFailed, out.Status)
	require.Equal(t, run.InvalidOutput, out.Error.Code)
	require.Contains(t, out.Error.Message, "output.score")
	require.Len(t, h.calls, 1, "allow_multiple_calls false: exactly one call")
	require.Equal(t, 1, out.ModelCalls)
	require.Empty(t, out.Parsed)
	require.JSONEq(t, `{"code": "InvalidOutput", "message": `+mustJSON(out.Error.Message)+`}`, string(h.record().Error))
}

func TestRepairSucceedsOnSecondCall(t *testing.T) {
	h := newHarness(t)
	h.replies(t, `{"summary": "Ada", "score": 42}`, `{"summary": "Ada", "score": 8}`)

	out := h.run(t, structuredInput(structuredDoc(true, 2), map[string]any{"name": "Ada", "age": 36}))

	require.Equal(t, run.StatusCompleted, out.Status)
	require.JSONEq(t, `{"summary": "Ada", "score": 8}`, string(out.Parsed))
	require.Equal(t, 2, out.ModelCalls)
	require.Equal(t, run.Usage{InputTokens: 20, OutputTokens: 10, TotalTokens: 30}, out.Usage)
	require.Len(t, h.calls, 2)

	first, second := h.calls[0].Messages, h.calls[1].Messages
	require.Len(t, first, 1)
	require.Len(t, second, 3, "the first call's messages, the invalid reply, the repair request")
	require.Equal(t, first, second[:1])
	require.Equal(t, chat.Message{Role: "assistant", Content: `{"summary": "Ada", "score": 42}`}, second[1])
	require.Equal(t, "user", second[2].Role)
	require.Contains(t, second[2].Content, "output.score: must be <= 10")
	require.Contains(t, second[2].Content, "corrected JSON")
	require.Equal(t, h.calls[0].ResponseFormat, h.calls[1].ResponseFormat, "the repair call asks for the same schema")
	require.Equal(t, []int{1, 2}, []int{h.record().ModelCalls[0].Call, h.record().ModelCalls[1].Call})
}

// TestStreamingRunTagsCallsAndPublishesVerdicts checks what a streaming
// run adds: each model call streams to the run's subject under its number,
// and each structured reply's verdict is published, so the gateway knows
// whether the text it holds is the output or is about to be repaired.
func TestStreamingRunTagsCallsAndPublishesVerdicts(t *testing.T) {
	h := newHarness(t)
	h.replies(t, `{"summary": "Ada", "score": 42}`, `{"summary": "Ada", "score": 8}`)
	in := structuredInput(structuredDoc(true, 2), map[string]any{"name": "Ada", "age": 36})
	in.StreamSubject = "bud.runs.resp_structured"

	out := h.run(t, in)

	require.Equal(t, run.StatusCompleted, out.Status)
	require.Len(t, h.calls, 2)
	for i, c := range h.calls {
		require.True(t, c.Stream)
		require.Equal(t, in.StreamSubject, c.StreamSubject)
		require.Equal(t, i+1, c.Call)
	}
	require.Equal(t, []activities.PublishRunEventInput{
		{Subject: in.StreamSubject, Event: runstream.Event{Type: runstream.TypeOutputRejected, Call: 1}},
		{Subject: in.StreamSubject, Event: runstream.Event{Type: runstream.TypeOutputAccepted, Call: 2}},
	}, h.events)
}

// TestRunWithoutStreamPublishesNothing: a run nobody watches makes the
// same steps as before streaming existed.
func TestRunWithoutStreamPublishesNothing(t *testing.T) {
	h := newHarness(t)
	h.replies(t, `{"summary": "Ada", "score": 42}`, `{"summary": "Ada", "score": 8}`)

	out := h.run(t, structuredInput(structuredDoc(true, 2), map[string]any{"name": "Ada", "age": 36}))

	require.Equal(t, run.StatusCompleted, out.Status)
	for _, c := range h.calls {
		require.False(t, c.Stream)
		require.Empty(t, c.StreamSubject)
		require.Zero(t, c.Call)
	}
	require.Empty(t, h.events)
}

func TestRepairsExhaustLLMRetryLimit(t *testing.T) {
	for _, limit := range []int{0, 1, 3} {
		t.Run(strings.Repeat("r", limit), func(t *testing.T) {
			h := newHarness(t)
			bad := make([]any, 1+limit)
			for i := range bad {
				bad[i] = `{"summary": "Ada"}`
			}
			h.replies(t, bad...)

			out := h.run(t, structuredInput(structuredDoc(true, limit), map[string]any{"name": "Ada", "age": 36}))

			require.Equal(t, run.StatusFailed, out.Status)
			require.Equal(t, run.InvalidOutput, out.Error.Code)
			require.Contains(t, out.Error.Message, "output.score")
			require.Len(t, h.calls, 1+limit, "one call and llm_retry_limit repairs")
			require.Equal(t, 1+limit, out.ModelCalls)
			require.Len(t, h.calls[limit].Messages, 1+2*limit, "each repair adds the reply and the request")
		})
	}
}

func TestStepCapStopsTheLoop(t *testing.T) {
	h := newHarness(t)
	// A document cannot allow more than 10 repairs; a prepared run that
	// asks for more still stops at the hard cap.
	var prep activities.PrepareRunResult
	h.env.OnActivity("PrepareRun", mock.Anything, mock.Anything).Return(func(ctx context.Context, in run.Input) (activities.PrepareRunResult, error) {
		res, err := (&activities.Activities{}).PrepareRun(ctx, in)
		res.LLMRetryLimit = 100
		prep = res
		return res, err
	})
	bad := make([]any, workflows.MaxModelCalls)
	for i := range bad {
		bad[i] = `not json`
	}
	h.replies(t, bad...)

	out := h.run(t, structuredInput(structuredDoc(true, 10), map[string]any{"name": "Ada", "age": 36}))

	require.Equal(t, 100, prep.LLMRetryLimit)
	require.Equal(t, run.StatusFailed, out.Status)
	require.Equal(t, run.StepLimit, out.Error.Code)
	require.Len(t, h.calls, workflows.MaxModelCalls)
}

func TestInvalidInputFailsTheRunWithParam(t *testing.T) {
	h := newHarness(t)
	h.replies(t)

	out := h.run(t, structuredInput(structuredDoc(false, 0), map[string]any{"name": "Ada", "age": -1}))

	require.Equal(t, run.StatusFailed, out.Status)
	require.Equal(t, run.InvalidInput, out.Error.Code)
	require.Equal(t, "prompt.variables.age", out.Error.Param)
	require.Contains(t, out.Error.Message, "must be >= 0")
	require.Zero(t, out.ModelCalls)
	require.Empty(t, h.calls)
	require.Empty(t, out.Model, "no model was chosen")

	rec := h.record()
	require.Nil(t, rec.RenderedMessages)
	require.Nil(t, rec.Output)
	require.Equal(t, map[string]any{"name": "Ada", "age": float64(-1)}, rec.Input.Variables, "the input as given")
	require.JSONEq(t, `{"code": "InvalidInput", "param": "prompt.variables.age", "message": `+mustJSON(out.Error.Message)+`}`, string(rec.Error))
}

func TestMissingTextFailsTheRun(t *testing.T) {
	h := newHarness(t)
	h.replies(t)

	out := h.run(t, textInput(""))

	require.Equal(t, run.InvalidInput, out.Error.Code)
	require.Equal(t, "input", out.Error.Param)
}

func TestInvalidDocumentFailsTheRun(t *testing.T) {
	h := newHarness(t)
	h.replies(t)
	in := textInput("hi")
	in.Document = json.RawMessage(`{"deployment": "qwen", "messages": [{"role": "user", "content": "{{ input "}]}`)

	out := h.run(t, in)

	require.Equal(t, run.InvalidPrompt, out.Error.Code)
}

func TestUpstreamRejectionFailsWithoutRetry(t *testing.T) {
	h := newHarness(t)
	h.replies(t, temporal.NewNonRetryableApplicationError("call model: answered 400", run.UpstreamRejected, nil,
		run.Failure{Status: 400, Message: "Invalid 'temperature': must be <= 2."}))

	out := h.run(t, textInput("hello"))

	require.Equal(t, run.StatusFailed, out.Status)
	require.Equal(t, run.UpstreamRejected, out.Error.Code)
	require.Equal(t, `model deployment "qwen" answered 400: Invalid 'temperature': must be <= 2.`, out.Error.Message)
	require.Equal(t, 400, out.Error.UpstreamStatus)
	require.Len(t, h.calls, 1, "a 4xx is not retried")
	require.Equal(t, 1, out.ModelCalls)
	require.Equal(t, out.Error.Message, h.record().ModelCalls[0].Error)
}

func TestModelNotFoundFailsWithoutRetry(t *testing.T) {
	h := newHarness(t)
	h.replies(t, temporal.NewApplicationError("no deployment", run.ModelNotFound, run.Failure{Message: `the prompt's model deployment "qwen" does not exist in this project`}))

	out := h.run(t, textInput("hello"))

	require.Equal(t, run.ModelNotFound, out.Error.Code)
	require.Len(t, h.calls, 1, "the retry policy lists ModelNotFound as non-retryable")
}

func TestUnavailableUpstreamIsRetried(t *testing.T) {
	h := newHarness(t)
	unavailable := func() error {
		return temporal.NewApplicationError("call model: 503", run.UpstreamUnavailable, run.Failure{Status: 503, Message: "overloaded"})
	}
	h.replies(t, unavailable(), unavailable(), activities.CallModelResult{Content: "third time", FinishReason: "stop", Attempt: 3})

	out := h.run(t, textInput("hello"))

	require.Equal(t, run.StatusCompleted, out.Status)
	require.Equal(t, "third time", out.Text)
	require.Len(t, h.calls, 3)
	require.Equal(t, 1, out.ModelCalls, "attempts of one call are one call")
	require.Equal(t, int32(3), h.record().ModelCalls[0].Attempt)
}

func TestUnavailableUpstreamFailsAfterEveryAttempt(t *testing.T) {
	h := newHarness(t)
	replies := make([]any, workflows.CallModelAttempts)
	for i := range replies {
		replies[i] = temporal.NewApplicationError("call model: 429", run.UpstreamUnavailable, run.Failure{Status: 429, Message: "Rate limit reached."})
	}
	h.replies(t, replies...)

	out := h.run(t, textInput("hello"))

	require.Equal(t, run.StatusFailed, out.Status)
	require.Equal(t, run.UpstreamUnavailable, out.Error.Code)
	require.Equal(t, 429, out.Error.UpstreamStatus)
	require.Len(t, h.calls, workflows.CallModelAttempts)
}

func TestModelTimeoutFailsAsUnavailable(t *testing.T) {
	h := newHarness(t)
	replies := make([]any, workflows.CallModelAttempts)
	for i := range replies {
		replies[i] = temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_START_TO_CLOSE, nil)
	}
	h.replies(t, replies...)

	out := h.run(t, textInput("hello"))

	require.Equal(t, run.StatusFailed, out.Status)
	require.Equal(t, run.UpstreamUnavailable, out.Error.Code)
	require.Equal(t, `model deployment "qwen" did not answer in time`, out.Error.Message)
	require.Zero(t, out.Error.UpstreamStatus)
	require.Len(t, h.calls, workflows.CallModelAttempts, "timeouts are retried")
}

func TestLengthFinishIsIncomplete(t *testing.T) {
	h := newHarness(t)
	h.replies(t, activities.CallModelResult{Content: `{"summary": "Ada, a math`, FinishReason: "length"})

	out := h.run(t, structuredInput(structuredDoc(true, 3), map[string]any{"name": "Ada", "age": 36}))

	require.Equal(t, run.StatusIncomplete, out.Status)
	require.Nil(t, out.Error)
	require.Len(t, h.calls, 1, "a cut-off reply is not repaired")
}

func TestRecordFailureFailsTheWorkflow(t *testing.T) {
	env := newTestEnv()
	workflows.Register(env, &activities.Activities{})
	env.OnActivity("CallModel", mock.Anything, mock.Anything).Return(activities.CallModelResult{Content: "hi", FinishReason: "stop"}, nil)
	env.OnActivity("RecordRun", mock.Anything, mock.Anything).Return(errors.New("connection refused"))

	env.ExecuteWorkflow(workflows.PromptRun, textInput("hello"))

	require.True(t, env.IsWorkflowCompleted())
	require.ErrorContains(t, env.GetWorkflowError(), "record run")
}

func TestStartOptions(t *testing.T) {
	in := structuredInput(structuredDoc(false, 0), nil)
	o := runs.StartOptions(in)
	require.Equal(t, "resp_structured", o.ID)
	require.Equal(t, run.TaskQueue, o.TaskQueue)
	sa := o.TypedSearchAttributes
	v, ok := sa.GetKeyword(runs.ProjectIDKey)
	require.True(t, ok)
	require.Equal(t, projectID.String(), v)
	version, ok := sa.GetInt64(runs.PromptVersionKey)
	require.True(t, ok)
	require.Equal(t, int64(3), version)
	dep, _ := sa.GetKeyword(runs.DeploymentKey)
	require.Equal(t, "describer", dep)

	playground := runs.RunSearchAttributes(textInput("hi"))
	require.Equal(t, 1, playground.Size(), "only the project is known in the playground")
	for name := range runs.SearchAttributes() {
		require.True(t, strings.HasPrefix(name, "Bud"), name)
	}
}

func normalizeTools(t *testing.T, tools []chat.Tool) []chat.Tool {
	t.Helper()
	out := make([]chat.Tool, len(tools))
	for i, tool := range tools {
		var v any
		require.NoError(t, json.Unmarshal(tool.Function.Parameters, &v))
		tool.Function.Parameters = json.RawMessage(`{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`)
		require.JSONEq(t, string(tool.Function.Parameters), mustJSON(v))
		out[i] = tool
	}
	return out
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestRefusedRunCallsNoModel: a run PrepareRun refuses (its prompt or
// deployment is not its project's, or the project is gone) fails with
// run.RunRefused on the first attempt, before any model call.
func TestRefusedRunCallsNoModel(t *testing.T) {
	h := newHarness(t)
	attempts := 0
	h.env.OnActivity("PrepareRun", mock.Anything, mock.Anything).Return(func(_ context.Context, in run.Input) (activities.PrepareRunResult, error) {
		attempts++
		require.Equal(t, projectID, in.ProjectID)
		require.Equal(t, "describer", in.Deployment)
		require.Equal(t, int32(3), in.PromptVersion)
		return activities.PrepareRunResult{}, temporal.NewNonRetryableApplicationError("prepare run: refused", run.RunRefused, nil,
			run.Failure{Message: "the run's project, prompt or deployment was not found"})
	})
	h.replies(t)

	out := h.run(t, structuredInput(structuredDoc(true, 2), map[string]any{"name": "Ada", "age": 36}))

	require.Equal(t, run.StatusFailed, out.Status)
	require.Equal(t, run.RunRefused, out.Error.Code)
	require.Equal(t, "the run's project, prompt or deployment was not found", out.Error.Message)
	require.Equal(t, 1, attempts, "a refusal is not retried")
	require.Empty(t, h.calls, "no model is called")
}
