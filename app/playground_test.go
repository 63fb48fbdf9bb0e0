package app_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/budhq/bud/app"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/statestore/statestoretest"
	"github.com/budhq/bud/upstreamtest"
)

// playgroundResponse is the part of a playground run's answer the tests
// read: OpenAI's Response object plus run_id and latency_ms.
type playgroundResponse struct {
	ID         string `json:"id"`
	Object     string `json:"object"`
	Model      string `json:"model"`
	Status     string `json:"status"`
	OutputText string `json:"output_text"`
	Output     []struct {
		Type    string `json:"type"`
		Role    string `json:"role"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"output"`
	Usage struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
		TotalTokens  int64 `json:"total_tokens"`
	} `json:"usage"`
	Prompt struct {
		ID        *string        `json:"id"`
		Version   *string        `json:"version"`
		Variables map[string]any `json:"variables"`
	} `json:"prompt"`
	Text struct {
		Format struct {
			Type string `json:"type"`
		} `json:"format"`
	} `json:"text"`
	Error        *run.Error `json:"error"`
	Instructions *string    `json:"instructions"`
	RunID        string     `json:"run_id"`
	LatencyMS    *int64     `json:"latency_ms"`
}

// compareResult is one result of a compare as a client reads it.
type compareResult struct {
	Index      int             `json:"index"`
	RunID      *string         `json:"run_id"`
	Status     string          `json:"status"`
	Model      string          `json:"model"`
	OutputText string          `json:"output_text"`
	Parsed     json.RawMessage `json:"parsed"`
	Error      *run.Error      `json:"error"`
	Usage      run.Usage       `json:"usage"`
	LatencyMS  *int64          `json:"latency_ms"`
	ModelCalls int             `json:"model_calls"`
	Validation string          `json:"validation"`
}

// textDoc is a text-input, text-output document on deployment dep.
func textDoc(dep, system string) map[string]any {
	return map[string]any{
		"deployment":    dep,
		"system_prompt": system,
		"messages":      []any{map[string]any{"role": "user", "content": "Say hello to {{ input }}."}},
	}
}

// scoredDoc is a text-input document on dep whose output is a summary and a
// score from 0 to 10, checked once (no repairs).
func scoredDoc(dep, system string) map[string]any {
	doc := textDoc(dep, system)
	doc["output"] = map[string]any{"type": "structured", "variables": []any{
		map[string]any{"name": "summary", "type": "string", "required": true},
		map[string]any{"name": "score", "type": "integer", "required": true, "validation": map[string]any{"basic": map[string]any{"ge": 0, "le": 10}}},
	}}
	return doc
}

// chatMessages are the messages of a request the stand-in received.
func chatMessages(t *testing.T, rec upstreamtest.Recorded) []map[string]any {
	t.Helper()
	var body struct {
		Messages []map[string]any `json:"messages"`
	}
	require.NoError(t, json.Unmarshal(rec.Body, &body))
	return body.Messages
}

func fieldNames(fields map[string]string) []string {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	return names
}

func TestPlaygroundRunUnsavedDocument(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.up.Script(upstreamtest.Echo())

	resp := decodeAs[playgroundResponse](t, b.post(t, "/api/playground/run", map[string]any{
		"project_id":   b.project.ID,
		"document":     textDoc("llm", "You are terse."),
		"input":        "Ada",
		"instructions": "Answer in English.",
	}), http.StatusOK)

	require.True(t, strings.HasPrefix(resp.ID, "resp_"), resp.ID)
	require.Equal(t, resp.ID, resp.RunID, "the run id is the response id")
	require.Equal(t, "response", resp.Object)
	require.Equal(t, run.StatusCompleted, resp.Status, "%+v", resp.Error)
	require.Equal(t, "llm", resp.Model)
	require.Equal(t, "Say hello to Ada.", resp.OutputText, "the stand-in echoes the rendered message")
	require.Len(t, resp.Output, 1)
	require.Equal(t, "Say hello to Ada.", resp.Output[0].Content[0].Text)
	require.Nil(t, resp.Prompt.ID, "an unsaved document is no saved prompt")
	require.Equal(t, "text", resp.Text.Format.Type)
	require.Equal(t, "Answer in English.", *resp.Instructions)
	require.Positive(t, resp.Usage.TotalTokens)
	require.NotNil(t, resp.LatencyMS)
	require.GreaterOrEqual(t, *resp.LatencyMS, int64(0))

	reqs := b.up.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "model-llm", reqs[0].Model)
	require.Equal(t, []map[string]any{
		{"role": "system", "content": "Answer in English."},
		{"role": "system", "content": "You are terse."},
		{"role": "user", "content": "Say hello to Ada."},
	}, chatMessages(t, reqs[0]))

	// The run is in the history, as a playground run of no saved prompt.
	rec := decodeAs[app.Run](t, b.do(t, "GET", "/api/runs/"+resp.RunID, nil), http.StatusOK)
	require.Equal(t, run.SourcePlayground, rec.Source)
	require.Equal(t, b.project.ID, rec.ProjectID)
	require.Nil(t, rec.PromptID)
	require.Equal(t, "llm", rec.Model)
	require.JSONEq(t, `[{"role":"system","content":"Answer in English."},{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to Ada."}]`, string(rec.RenderedMessages))
}

func TestPlaygroundRunSavedVersion(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.up.SetDefault(upstreamtest.Echo())
	pr := b.createPrompt(t, b.project.ID, "greeter", nil) // v1, the default
	v2 := promptDoc("llm", map[string]any{"system_prompt": "You greet people warmly."})
	decodeAs[versionOut](t, b.do(t, "POST", "/api/prompts/"+pr.ID.String()+"/versions", map[string]any{"document": v2}), http.StatusCreated)
	path := "/api/playground/run"

	// Without a version, the default runs; defaults fill the input.
	resp := decodeAs[playgroundResponse](t, b.post(t, path, map[string]any{
		"project_id": b.project.ID, "prompt_id": pr.ID, "variables": map[string]any{"name": "Ada"},
	}), http.StatusOK)
	require.Equal(t, run.StatusCompleted, resp.Status, "%+v", resp.Error)
	require.Equal(t, "Greet Ada in English.", resp.OutputText)
	require.Equal(t, pr.ID.String(), *resp.Prompt.ID)
	require.Equal(t, "1", *resp.Prompt.Version)
	require.Equal(t, "You greet people.", chatMessages(t, b.up.Requests()[0])[0]["content"])

	resp = decodeAs[playgroundResponse](t, b.post(t, path, map[string]any{
		"project_id": b.project.ID, "prompt_id": pr.ID, "version": 2, "variables": map[string]any{"name": "Ada", "language": "French"},
	}), http.StatusOK)
	require.Equal(t, "Greet Ada in French.", resp.OutputText)
	require.Equal(t, "2", *resp.Prompt.Version)
	require.Equal(t, "You greet people warmly.", chatMessages(t, b.up.Requests()[1])[0]["content"])

	rec := decodeAs[app.Run](t, b.do(t, "GET", "/api/runs/"+resp.RunID, nil), http.StatusOK)
	require.Equal(t, pr.ID, *rec.PromptID)
	require.EqualValues(t, 2, *rec.PromptVersion)
	require.JSONEq(t, `{"variables": {"name": "Ada", "language": "French"}}`, string(rec.Input))

	// Absent versions and prompts, and prompts of another project, are 404.
	e := errorOf(t, b.post(t, path, map[string]any{"project_id": b.project.ID, "prompt_id": pr.ID, "version": 3, "variables": map[string]any{"name": "Ada"}}), http.StatusNotFound)
	require.Equal(t, []string{"version"}, fieldNames(e.Error.Fields))
	e = errorOf(t, b.post(t, path, map[string]any{"project_id": b.project.ID, "prompt_id": uuid.New(), "variables": map[string]any{"name": "Ada"}}), http.StatusNotFound)
	require.Equal(t, []string{"prompt_id"}, fieldNames(e.Error.Fields))
	other := b.createProject(t, "other-"+randomHex(6))
	b.createDeployment(t, other.ID, modelBody("llm", nil))
	theirs := b.createPrompt(t, other.ID, "theirs", nil)
	e = errorOf(t, b.post(t, path, map[string]any{"project_id": b.project.ID, "prompt_id": theirs.ID, "variables": map[string]any{"name": "Ada"}}), http.StatusNotFound)
	require.Equal(t, "not_found", e.Error.Code)
	require.Equal(t, []string{"prompt_id"}, fieldNames(e.Error.Fields))
	require.Len(t, b.up.Requests(), 2, "refused runs call no model")
}

// TestPlaygroundRunRefused: what is wrong with a request is refused before
// any run starts, naming the field.
func TestPlaygroundRunRefused(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	project := b.project.ID.String()
	structured := promptDoc("llm", nil)
	text := textDoc("llm", "")

	for _, tc := range []struct {
		name   string
		body   any
		status int
		fields []string
	}{
		{"streaming", map[string]any{"project_id": project, "document": text, "input": "x", "stream": true}, 400, []string{"stream"}},
		{"no project", map[string]any{"document": text, "input": "x"}, 400, []string{"project_id"}},
		{"project id not a UUID", map[string]any{"project_id": "p1", "document": text, "input": "x"}, 400, []string{"project_id"}},
		{"unknown project", map[string]any{"project_id": uuid.NewString(), "document": text, "input": "x"}, 404, []string{"project_id"}},
		{"no prompt", map[string]any{"project_id": project, "input": "x"}, 400, []string{"document"}},
		{"document and prompt_id", map[string]any{"project_id": project, "document": text, "prompt_id": uuid.NewString(), "input": "x"}, 400, []string{"prompt_id"}},
		{"version of a document", map[string]any{"project_id": project, "document": text, "version": 2, "input": "x"}, 400, []string{"version"}},
		{"prompt id not a UUID", map[string]any{"project_id": project, "prompt_id": "greeter", "input": "x"}, 400, []string{"prompt_id"}},
		{"unknown field", map[string]any{"project_id": project, "document": text, "input": "x", "temperature": 1}, 400, []string{"temperature"}},
		{"input not a string", map[string]any{"project_id": project, "document": text, "input": 5}, 400, []string{"input"}},
		{"unknown deployment", map[string]any{"project_id": project, "document": textDoc("nope", ""), "input": "x"}, 422, []string{"document.deployment"}},
		{"bad template", map[string]any{"project_id": project, "document": textDoc("llm", "Hi {{ nobody }}"), "input": "x"}, 422, []string{"document.system_prompt"}},
		{"unknown document field", map[string]any{"project_id": project, "document": promptDoc("llm", map[string]any{"temprature": 1})}, 400, []string{"document.temprature"}},
		{"text prompt without input", map[string]any{"project_id": project, "document": text}, 400, []string{"input"}},
		{"text prompt given variables", map[string]any{"project_id": project, "document": text, "input": "x", "variables": map[string]any{"a": 1}}, 400, []string{"variables"}},
		{"required variable missing", map[string]any{"project_id": project, "document": structured, "variables": map[string]any{"language": "French"}}, 400, []string{"variables.name"}},
		{"variable too short", map[string]any{"project_id": project, "document": structured, "variables": map[string]any{"name": ""}}, 400, []string{"variables.name"}},
		{"option not offered and unknown variable", map[string]any{"project_id": project, "document": structured, "variables": map[string]any{"name": "Ada", "language": "German", "age": 3}}, 400, []string{"variables.age", "variables.language"}},
		{"structured prompt given text", map[string]any{"project_id": project, "document": structured, "input": "Ada", "variables": map[string]any{"name": "Ada"}}, 400, []string{"input"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := errorOf(t, b.post(t, "/api/playground/run", tc.body), tc.status)
			require.Equal(t, tc.fields, fieldNames(e.Error.Fields), "%+v", e.Error)
			require.NotContains(t, e.Error.Message, "prompt.variables", "fields are named as in this request")
		})
	}
	require.Zero(t, b.up.Received(), "nothing refused reached a model")
	runs := decodeAs[page[app.RunSummary]](t, b.do(t, "GET", "/api/runs?project_id="+project, nil), http.StatusOK)
	require.Zero(t, runs.Total, "and nothing ran")
}

func TestPlaygroundCompare(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	for _, d := range []string{"a", "b", "c"} {
		b.deploy(t, d, "model-"+d)
	}
	// Candidate 2 is a saved prompt; its version 2 is the one compared.
	saved := decodeAs[promptOut](t, b.do(t, "POST", "/api/projects/"+b.project.ID.String()+"/prompts",
		map[string]any{"name": "scorer", "document": scoredDoc("c", "You are C, v1.")}), http.StatusCreated)
	decodeAs[versionOut](t, b.do(t, "POST", "/api/prompts/"+saved.ID.String()+"/versions",
		map[string]any{"document": scoredDoc("c", "You are C, v2.")}), http.StatusCreated)

	b.up.ScriptModel("model-a", upstreamtest.Text("A: hello, Ada!"))
	b.up.ScriptModel("model-b", upstreamtest.JSONContent(map[string]any{"summary": "B greets Ada.", "score": 7}))
	b.up.ScriptModel("model-c", upstreamtest.JSONContent(map[string]any{"summary": "C greets Ada.", "score": 42}))

	got := decodeAs[struct {
		Results []compareResult `json:"results"`
	}](t, b.post(t, "/api/playground/compare", map[string]any{
		"project_id": b.project.ID,
		"candidates": []any{
			map[string]any{"document": textDoc("a", "You are A.")},
			map[string]any{"document": scoredDoc("b", "You are B.")},
			map[string]any{"prompt_id": saved.ID, "version": 2},
		},
		"input": "Ada",
	}), http.StatusOK)

	require.Len(t, got.Results, 3)
	ids := map[string]bool{}
	for i, r := range got.Results {
		require.Equal(t, i, r.Index, "results are in candidate order")
		require.NotNil(t, r.RunID)
		ids[*r.RunID] = true
		require.Equal(t, 1, r.ModelCalls)
		require.Positive(t, r.Usage.TotalTokens)
		require.NotNil(t, r.LatencyMS)
	}
	require.Len(t, ids, 3, "each candidate is a run of its own")

	a, bb, c := got.Results[0], got.Results[1], got.Results[2]
	require.Equal(t, run.StatusCompleted, a.Status, "%+v", a.Error)
	require.Equal(t, "a", a.Model)
	require.Equal(t, "A: hello, Ada!", a.OutputText)
	require.Equal(t, "null", string(a.Parsed))
	require.Nil(t, a.Error)
	require.Equal(t, "not_applicable", a.Validation)

	require.Equal(t, run.StatusCompleted, bb.Status, "%+v", bb.Error)
	require.Equal(t, "b", bb.Model)
	require.JSONEq(t, `{"summary": "B greets Ada.", "score": 7}`, string(bb.Parsed))
	require.Equal(t, "passed", bb.Validation)

	require.Equal(t, run.StatusFailed, c.Status)
	require.Equal(t, "c", c.Model)
	require.Equal(t, run.InvalidOutput, c.Error.Code)
	require.Contains(t, c.Error.Message, "score")
	require.Equal(t, "failed", c.Validation)

	// Each candidate's model got that candidate's rendered prompt.
	system := map[string]any{}
	for _, rec := range b.up.Requests() {
		msgs := chatMessages(t, rec)
		system[rec.Model] = msgs[0]["content"]
		require.Equal(t, "Say hello to Ada.", msgs[1]["content"])
	}
	require.Equal(t, map[string]any{"model-a": "You are A.", "model-b": "You are B.", "model-c": "You are C, v2."}, system)

	// Every run is in the history with its version.
	rec := decodeAs[app.Run](t, b.do(t, "GET", "/api/runs/"+*c.RunID, nil), http.StatusOK)
	require.EqualValues(t, 2, *rec.PromptVersion)
	require.Equal(t, run.StatusFailed, rec.Status)
}

// TestPlaygroundCompareRefused: every candidate is checked before any run
// starts, and every problem is named by its candidate.
func TestPlaygroundCompareRefused(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "a", "model-a")
	other := b.createProject(t, "other-"+randomHex(6))
	b.createDeployment(t, other.ID, modelBody("llm", nil))
	theirs := b.createPrompt(t, other.ID, "theirs", nil)
	ok := map[string]any{"document": textDoc("a", "")}
	compare := func(candidates []any, extra map[string]any) response {
		body := map[string]any{"project_id": b.project.ID, "candidates": candidates, "input": "Ada"}
		for k, v := range extra {
			body[k] = v
		}
		return b.post(t, "/api/playground/compare", body)
	}

	e := errorOf(t, compare([]any{ok}, nil), http.StatusBadRequest)
	require.Equal(t, []string{"candidates"}, fieldNames(e.Error.Fields))
	nine := make([]any, 9)
	for i := range nine {
		nine[i] = ok
	}
	e = errorOf(t, compare(nine, nil), http.StatusBadRequest)
	require.Equal(t, []string{"candidates"}, fieldNames(e.Error.Fields))

	// A document refused on its meaning alone is a 422.
	e = errorOf(t, compare([]any{ok, map[string]any{"document": textDoc("nope", "")}}, nil), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"candidates[1].document.deployment"}, fieldNames(e.Error.Fields))
	require.Contains(t, e.Error.Message, "candidates[1].document.deployment")

	// Problems of several candidates come together; bad input decides the
	// status.
	e = errorOf(t, compare([]any{
		ok,
		map[string]any{"document": textDoc("nope", "")},
		map[string]any{"document": promptDoc("a", nil)},
		map[string]any{"prompt_id": theirs.ID},
	}, nil), http.StatusBadRequest)
	require.Equal(t, "invalid", e.Error.Code)
	require.Equal(t, []string{"candidates[1].document.deployment", "candidates[2].input", "candidates[2].variables.name", "candidates[3].prompt_id"}, fieldNames(e.Error.Fields))

	e = errorOf(t, compare([]any{ok, map[string]any{"prompt_id": theirs.ID}}, nil), http.StatusNotFound)
	require.Equal(t, []string{"candidates[1].prompt_id"}, fieldNames(e.Error.Fields))

	e = errorOf(t, compare([]any{ok, ok}, map[string]any{"stream": true}), http.StatusBadRequest)
	require.Equal(t, []string{"stream"}, fieldNames(e.Error.Fields), "compare does not stream")

	require.Zero(t, b.up.Received(), "no refused compare reached a model")
}

func TestPlaygroundWithoutTemporal(t *testing.T) {
	t.Parallel()
	b, p := promptSetup(t)
	for _, path := range []string{"/api/playground/run", "/api/playground/compare"} {
		e := errorOf(t, b.do(t, "POST", path, map[string]any{"project_id": p.ID}), http.StatusServiceUnavailable)
		require.Equal(t, "unavailable", e.Error.Code)
		require.Equal(t, "prompt runs are not configured", e.Error.Message)
	}
	// The history is the database's, and answers without Temporal.
	runs := decodeAs[page[app.RunSummary]](t, b.do(t, "GET", "/api/runs", nil), http.StatusOK)
	require.Zero(t, runs.Total)
	errorOf(t, b.do(t, "GET", "/api/runs/resp_0123", nil), http.StatusNotFound)
}

// TestPlaygroundRunNotStarted: a run Temporal refuses to start is a 503 for
// one run, and that candidate's error in a compare.
func TestPlaygroundRunNotStarted(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	// A namespace the server does not have refuses every start.
	c, err := client.Dial(client.Options{
		HostPort: runEnv.Server.HostPort(), Namespace: "no-such-namespace",
		Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	rc, err := runs.New(c, "")
	require.NoError(t, err)
	h, err := app.New(app.Config{Pool: runEnv.Pool, Box: runEnv.Box, AdminToken: b.token, Documents: statestoretest.Store(t), Runs: rc,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	b.handler = h

	e := errorOf(t, b.post(t, "/api/playground/run", map[string]any{"project_id": b.project.ID, "document": textDoc("llm", ""), "input": "Ada"}), http.StatusServiceUnavailable)
	require.Equal(t, "unavailable", e.Error.Code)

	got := decodeAs[struct {
		Results []compareResult `json:"results"`
	}](t, b.post(t, "/api/playground/compare", map[string]any{
		"project_id": b.project.ID,
		"candidates": []any{map[string]any{"document": textDoc("llm", "")}, map[string]any{"document": textDoc("llm", "")}},
		"input":      "Ada",
	}), http.StatusOK)
	require.Len(t, got.Results, 2)
	for i, r := range got.Results {
		require.Equal(t, i, r.Index)
		require.Nil(t, r.RunID, "no run to look up")
		require.Equal(t, run.StatusFailed, r.Status)
		require.Equal(t, "run_not_started", r.Error.Code)
	}
	require.Zero(t, b.up.Received())
}
