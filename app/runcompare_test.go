package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/app"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/upstreamtest"
)

// summaryDoc is a text-input document on dep whose output is a summary and
// a score.
func summaryDoc(dep, system string) map[string]any {
	return map[string]any{
		"deployment":    dep,
		"system_prompt": system,
		"messages":      []any{map[string]any{"role": "user", "content": "Summarize {{ input }}."}},
		"output": map[string]any{"type": "structured", "variables": []any{
			map[string]any{"name": "summary", "type": "string", "required": true},
			map[string]any{"name": "score", "type": "integer", "required": true},
		}},
	}
}

// playgroundRunID runs body in the playground and returns the run's id,
// requiring it completed.
func (b *runBundle) playgroundRunID(t *testing.T, body map[string]any) string {
	t.Helper()
	body["project_id"] = b.project.ID
	resp := decodeAs[playgroundResponse](t, b.post(t, "/api/playground/run", body), http.StatusOK)
	require.Equal(t, run.StatusCompleted, resp.Status, "%+v", resp.Error)
	return resp.RunID
}

// changeOf finds the change at path, failing the test without one.
func changeOf(t *testing.T, cs app.ChangeSet, path string) app.Change {
	t.Helper()
	require.True(t, cs.Available, "%+v", cs)
	for _, c := range cs.Changes {
		if c.Path == path {
			return c
		}
	}
	t.Fatalf("no change at %s in %+v", path, cs.Changes)
	return app.Change{}
}

func rawJSON(t *testing.T, r *json.RawMessage) any {
	t.Helper()
	require.NotNil(t, r)
	var v any
	require.NoError(t, json.Unmarshal(*r, &v))
	return v
}

// sides rebuilds the two texts a word diff compares.
func sides(d app.TextDiff) (before, after string) {
	for _, c := range d.Changes {
		if c.Op != app.TextInsert {
			before += c.Text
		}
		if c.Op != app.TextDelete {
			after += c.Text
		}
	}
	return before, after
}

// TestCompareRuns compares three real runs: two versions of a structured
// prompt and an unsaved text document.
func TestCompareRuns(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.deploy(t, "plain", "model-plain")
	saved := decodeAs[promptOut](t, b.do(t, "POST", "/api/projects/"+b.project.ID.String()+"/prompts",
		map[string]any{"name": "summarizer", "document": summaryDoc("llm", "You summarize.")}), http.StatusCreated)
	decodeAs[versionOut](t, b.do(t, "POST", "/api/prompts/"+saved.ID.String()+"/versions",
		map[string]any{"document": summaryDoc("llm", "You summarize briefly.")}), http.StatusCreated)
	b.up.ScriptModel("model-llm",
		upstreamtest.JSONContent(map[string]any{"summary": "Ada wrote the first program.", "score": 7}),
		upstreamtest.JSONContent(map[string]any{"summary": "Ada wrote the first published program.", "score": 7}),
	)
	b.up.ScriptModel("model-plain", upstreamtest.Text("Ada Lovelace wrote the first program, in 1843."))

	v1 := b.playgroundRunID(t, map[string]any{"prompt_id": saved.ID, "version": 1, "input": "Ada"})
	v2 := b.playgroundRunID(t, map[string]any{"prompt_id": saved.ID, "version": 2, "input": "Ada"})
	text := b.playgroundRunID(t, map[string]any{"document": textDoc("plain", "You are terse."), "input": "Ada"})

	got := decodeAs[app.RunComparison](t, b.post(t, "/api/runs/compare", map[string]any{
		"project_id": b.project.ID, "run_ids": []string{v1, v2, text},
	}), http.StatusOK)
	require.Equal(t, b.project.ID, got.ProjectID)
	require.Len(t, got.Runs, 3)
	for i, id := range []string{v1, v2, text} {
		r := got.Runs[i]
		require.Equal(t, i, r.Index)
		require.Equal(t, id, r.ID, "runs are in the order asked")
		require.Equal(t, run.StatusCompleted, r.Status)
		require.Equal(t, 1, r.ModelCalls)
		require.Positive(t, r.Usage.TotalTokens)
		require.JSONEq(t, `{"text": "Ada"}`, string(r.Input))
	}

	// Each run's record and the document it ran: the saved versions
	// through their versions, the unsaved document from the copy it kept.
	a, bb, c := got.Runs[0], got.Runs[1], got.Runs[2]
	require.Equal(t, app.DocumentFromVersion, a.DocumentSource)
	require.EqualValues(t, 1, *a.PromptVersion)
	require.Equal(t, "llm", a.Model)
	require.Contains(t, string(a.Document), `"system_prompt":"You summarize."`)
	require.Equal(t, app.DocumentFromVersion, bb.DocumentSource)
	require.Contains(t, string(bb.Document), `"system_prompt":"You summarize briefly."`)
	require.Equal(t, app.DocumentKept, c.DocumentSource, c.DocumentNote)
	require.Nil(t, c.PromptID)
	require.Equal(t, "plain", c.Model)
	require.Contains(t, string(c.Document), `"system_prompt":"You are terse."`)

	require.JSONEq(t, `{"summary": "Ada wrote the first program.", "score": 7}`, string(a.Output.Parsed))
	require.Equal(t, "passed", a.Validation.Status)
	require.Equal(t, "Ada Lovelace wrote the first program, in 1843.", c.Output.Text)
	require.Equal(t, "null", string(c.Output.Parsed))
	require.Equal(t, "not_applicable", c.Validation.Status)
	require.JSONEq(t, `[{"role":"system","content":"You summarize."},{"role":"user","content":"Summarize Ada."}]`, string(a.RenderedMessages))

	require.Len(t, got.Differences, 2)
	d := got.Differences[0]
	require.Equal(t, v2, d.RunID)
	require.Equal(t, v1, d.Against)

	// The document: only the system prompt changed, old and new shown.
	require.True(t, d.Document.Available)
	require.Len(t, d.Document.Changes, 1, "%+v", d.Document.Changes)
	sp := changeOf(t, d.Document, "/system_prompt")
	require.Equal(t, "replace", sp.Op)
	require.Equal(t, "You summarize.", rawJSON(t, sp.OldValue))
	require.Equal(t, "You summarize briefly.", rawJSON(t, sp.Value))
	// The rendered system message followed it; the input did not change.
	msg := changeOf(t, d.RenderedMessages, "/0/content")
	require.Equal(t, "You summarize briefly.", rawJSON(t, msg.Value))
	require.True(t, d.Input.Available)
	require.Empty(t, d.Input.Changes)
	require.True(t, d.ToolCalls.Available)
	require.Empty(t, d.ToolCalls.Changes)

	// The structured output field by field.
	require.True(t, d.StructuredOutput.Available, d.StructuredOutput.Note)
	require.Len(t, d.StructuredOutput.Fields, 2)
	fields := map[string]app.FieldChange{}
	for _, f := range d.StructuredOutput.Fields {
		fields[f.Path] = f
	}
	summary, score := fields["/summary"], fields["/score"]
	require.Equal(t, "/summary", summary.Path)
	require.Equal(t, app.FieldChanged, summary.Status)
	require.Equal(t, "Ada wrote the first program.", rawJSON(t, summary.Old))
	require.Equal(t, "Ada wrote the first published program.", rawJSON(t, summary.New))
	require.Equal(t, "/score", score.Path)
	require.Equal(t, app.FieldEqual, score.Status)
	require.EqualValues(t, 7, rawJSON(t, score.Value))
	require.Nil(t, score.Old)

	// The output texts word by word: one word inserted.
	var inserted []string
	for _, w := range d.OutputText.Changes {
		if w.Op == app.TextInsert {
			inserted = append(inserted, w.Text)
		}
		require.NotEqual(t, app.TextDelete, w.Op, "%+v", d.OutputText.Changes)
	}
	require.Equal(t, []string{"published "}, inserted)
	before, after := sides(d.OutputText)
	require.Equal(t, a.Output.Text, before)
	require.Equal(t, bb.Output.Text, after)

	require.Equal(t, bb.Usage.TotalTokens-a.Usage.TotalTokens, d.Usage.TotalTokens)
	require.Equal(t, bb.LatencyMS-a.LatencyMS, d.LatencyMS)
	require.Zero(t, d.ModelCalls)

	// The text run against the first: no structured output to compare,
	// said so; its document differs in more than the system prompt.
	d = got.Differences[1]
	require.Equal(t, text, d.RunID)
	require.False(t, d.StructuredOutput.Available)
	require.Contains(t, d.StructuredOutput.Note, text)
	require.Nil(t, d.StructuredOutput.Fields)
	require.Equal(t, "You are terse.", rawJSON(t, changeOf(t, d.Document, "/system_prompt").Value))
	require.Equal(t, "plain", rawJSON(t, changeOf(t, d.Document, "/deployment").Value))
	before, after = sides(d.OutputText)
	require.Equal(t, a.Output.Text, before)
	require.Equal(t, c.Output.Text, after)
	require.Equal(t, c.Usage.InputTokens-a.Usage.InputTokens, d.Usage.InputTokens)

	// Without project_id, the first run's project is the one.
	again := decodeAs[app.RunComparison](t, b.post(t, "/api/runs/compare", map[string]any{"run_ids": []string{text, v1}}), http.StatusOK)
	require.Equal(t, b.project.ID, again.ProjectID)
	require.Equal(t, v1, again.Differences[0].RunID)

	// A run of another project is absent here, named by its place.
	other := b.createProject(t, "other-"+randomHex(6))
	b.createDeployment(t, other.ID, modelBody("plain", map[string]any{"upstream": map[string]any{"base_url": b.up.URL(), "model": "model-plain"}}))
	b.up.ScriptModel("model-plain", upstreamtest.Text("theirs"))
	theirs := decodeAs[playgroundResponse](t, b.post(t, "/api/playground/run", map[string]any{
		"project_id": other.ID, "document": textDoc("plain", ""), "input": "Ada",
	}), http.StatusOK).RunID
	e := errorOf(t, b.post(t, "/api/runs/compare", map[string]any{"project_id": b.project.ID, "run_ids": []string{v1, theirs}}), http.StatusNotFound)
	require.Equal(t, "not_found", e.Error.Code)
	require.Equal(t, []string{"run_ids[1]"}, fieldNames(e.Error.Fields))
	e = errorOf(t, b.post(t, "/api/runs/compare", map[string]any{"run_ids": []string{v1, v2, theirs}}), http.StatusNotFound)
	require.Equal(t, []string{"run_ids[2]"}, fieldNames(e.Error.Fields))
	e = errorOf(t, b.post(t, "/api/runs/compare", map[string]any{"project_id": other.ID, "run_ids": []string{v1, theirs, v2}}), http.StatusNotFound)
	require.Equal(t, []string{"run_ids[0]", "run_ids[2]"}, fieldNames(e.Error.Fields))
	require.Contains(t, e.Error.Message, "run_ids[0]")
}

// TestCompareRunsRefused: a request that cannot name a comparison is
// refused before any run is read, naming the field.
func TestCompareRunsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "p")
	nine := make([]string, 9)
	for i := range nine {
		nine[i] = "resp_" + strings.Repeat("x", i+1)
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		fields []string
	}{
		{"no run ids", map[string]any{"project_id": p.ID}, 400, []string{"run_ids"}},
		{"one run", map[string]any{"run_ids": []string{"resp_a"}}, 400, []string{"run_ids"}},
		{"nine runs", map[string]any{"run_ids": nine}, 400, []string{"run_ids"}},
		{"duplicate", map[string]any{"run_ids": []string{"resp_a", "resp_b", "resp_a"}}, 400, []string{"run_ids[2]"}},
		{"blank", map[string]any{"run_ids": []string{"", "resp_b"}}, 400, []string{"run_ids[0]"}},
		{"run ids not strings", map[string]any{"run_ids": []int{1, 2}}, 400, []string{"run_ids"}},
		{"project id not a UUID", map[string]any{"project_id": "p1", "run_ids": []string{"resp_a", "resp_b"}}, 400, []string{"project_id"}},
		{"unknown field", map[string]any{"run_ids": []string{"resp_a", "resp_b"}, "against": 0}, 400, []string{"against"}},
		{"unknown project", map[string]any{"project_id": uuid.New(), "run_ids": []string{"resp_a", "resp_b"}}, 404, []string{"project_id"}},
		{"unknown runs", map[string]any{"project_id": p.ID, "run_ids": []string{"resp_a", "resp_b"}}, 404, []string{"run_ids[0]", "run_ids[1]"}},
		{"unknown first run", map[string]any{"run_ids": []string{"resp_a", "resp_b"}}, 404, []string{"run_ids[0]", "run_ids[1]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := errorOf(t, b.do(t, "POST", "/api/runs/compare", tc.body), tc.status)
			require.Equal(t, tc.fields, fieldNames(e.Error.Fields), "%+v", e.Error)
		})
	}
}
