package activities_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/run"
)

const greeterDoc = `{
  "deployment": "qwen",
  "model_params": {"temperature": 0.3, "max_tokens": 64},
  "system_prompt": "You are {{ persona }}.",
  "messages": [{"role": "user", "content": "Greet {{ name }}{% if age %}, aged {{ age }}{% endif %}."}],
  "input": {"type": "structured", "variables": [
    {"name": "persona", "type": "string", "default": "a butler"},
    {"name": "name", "type": "string", "required": true, "validation": {"basic": {"min_length": 1}}},
    {"name": "age", "type": "integer", "validation": {"basic": {"ge": 0}}}
  ]},
  "output": {"type": "structured", "variables": [
    {"name": "greeting", "type": "string", "required": true},
    {"name": "formal", "type": "boolean", "required": true}
  ]},
  "tools": [
    {"type": "function", "name": "lookup_title", "description": "A person's title", "parameters": {"type": "object", "properties": {"name": {"type": "string"}}}},
    {"type": "connection", "connection_id": "7f9c2d1e-2a4b-4c3d-9e8f-1a2b3c4d5e6f"}
  ],
  "allow_multiple_calls": true,
  "llm_retry_limit": 2
}`

func prepare(t *testing.T, in run.Input) (activities.PrepareRunResult, error) {
	t.Helper()
	acts := &activities.Activities{}
	v, err := newActivityEnv(acts).ExecuteLocalActivity(acts.PrepareRun, in)
	if err != nil {
		return activities.PrepareRunResult{}, err
	}
	var res activities.PrepareRunResult
	require.NoError(t, v.Get(&res))
	return res, nil
}

func TestPrepareRunRenders(t *testing.T) {
	t.Parallel()
	res, err := prepare(t, run.Input{
		Document:     json.RawMessage(greeterDoc),
		Variables:    map[string]any{"name": "Ada", "age": 36},
		Instructions: "Be brief.",
		InputItems:   json.RawMessage(`[{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Shall I?"}]}, {"role": "user", "content": "Yes."}]`),
	})

	require.NoError(t, err)
	require.Equal(t, "qwen", res.Deployment)
	require.Equal(t, []chat.Message{
		{Role: "system", Content: "Be brief."},
		{Role: "system", Content: "You are a butler."},
		{Role: "user", Content: "Greet Ada, aged 36."},
		{Role: "assistant", Content: "Shall I?"},
		{Role: "user", Content: "Yes."},
	}, res.Messages)
	require.Equal(t, map[string]any{"persona": "a butler", "name": "Ada", "age": float64(36)}, res.Variables, "defaults applied")
	require.JSONEq(t, `{"temperature": 0.3, "max_tokens": 64}`, string(res.ModelParams))
	require.JSONEq(t, `{"type": "json_schema", "json_schema": {"name": "output", "strict": true, "schema": {
	  "type": "object", "additionalProperties": false, "required": ["greeting", "formal"],
	  "properties": {"greeting": {"type": "string"}, "formal": {"type": "boolean"}}}}}`, string(res.ResponseFormat))
	require.Len(t, res.Tools, 1, "connection tools are not offered yet")
	require.Equal(t, "function", res.Tools[0].Type)
	require.Equal(t, "lookup_title", res.Tools[0].Function.Name)
	require.Equal(t, "A person's title", res.Tools[0].Function.Description)
	require.JSONEq(t, `{"type": "object", "properties": {"name": {"type": "string"}}}`, string(res.Tools[0].Function.Parameters))
	require.True(t, res.StructuredOutput)
	require.True(t, res.AllowMultipleCalls)
	require.Equal(t, 2, res.LLMRetryLimit)
}

// TestPrepareRunStrictSchema: the schema sent upstream is the strict form
// of the output's, optional variables nullable; an output beyond strict
// mode goes non-strict, with the reason the run's record will show.
func TestPrepareRunStrictSchema(t *testing.T) {
	t.Parallel()
	doc := `{"deployment": "qwen", "system_prompt": "hi", "output": {"type": "structured", "variables": [
		{"name": "answer", "type": "string", "required": true, "validation": {"basic": {"max_length": 10}}},
		{"name": "lang", "type": "string", "default": "en"}]}}`
	res, err := prepare(t, run.Input{Document: json.RawMessage(doc), Text: "hi"})
	require.NoError(t, err)
	require.JSONEq(t, `{"type": "json_schema", "json_schema": {"name": "output", "strict": true, "schema": {
	  "type": "object", "additionalProperties": false, "required": ["answer", "lang"],
	  "properties": {"answer": {"type": "string"}, "lang": {"type": ["string", "null"]}}}}}`, string(res.ResponseFormat))
	require.Empty(t, res.StrictReason)

	opts := make([]string, 500)
	for i := range opts {
		opts[i] = fmt.Sprintf(`"o%d"`, i)
	}
	enum := `{"type": "enum", "required": true, "options": [` + strings.Join(opts, ",") + `]`
	doc = `{"deployment": "qwen", "system_prompt": "hi", "output": {"type": "structured", "variables": [
		{"name": "a", ` + enum[1:] + `}, {"name": "b", ` + enum[1:] + `}, {"name": "c", ` + enum[1:] + `}]}}`
	res, err = prepare(t, run.Input{Document: json.RawMessage(doc), Text: "hi"})
	require.NoError(t, err)
	var rf struct {
		JSONSchema struct {
			Strict bool            `json:"strict"`
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	}
	require.NoError(t, json.Unmarshal(res.ResponseFormat, &rf))
	require.False(t, rf.JSONSchema.Strict)
	require.Contains(t, string(rf.JSONSchema.Schema), `"required":["a","b","c"]`, "the full schema goes")
	require.Equal(t, "the output schema is beyond OpenAI's strict mode: In context=(), the schema has 1500 enum values; at most 1000 are allowed.", res.StrictReason)
}

func TestPrepareRunTextPrompt(t *testing.T) {
	t.Parallel()
	res, err := prepare(t, run.Input{
		Document: json.RawMessage(`{"deployment": "qwen", "messages": [{"role": "user", "content": "Echo: {{ input }}"}]}`),
		Text:     "ping",
	})

	require.NoError(t, err)
	require.Equal(t, []chat.Message{{Role: "user", Content: "Echo: ping"}}, res.Messages)
	require.Empty(t, res.ResponseFormat)
	require.Empty(t, res.Tools)
	require.False(t, res.StructuredOutput)
	require.Equal(t, 3, res.LLMRetryLimit, "the document's default")
}

func TestPrepareRunFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		in       run.Input
		errType  string
		param    string
		contains string
	}{
		{"variable breaks a constraint", run.Input{Document: json.RawMessage(greeterDoc), Variables: map[string]any{"name": "Ada", "age": -3}},
			run.InvalidInput, "prompt.variables.age", "must be >= 0"},
		{"required variable missing", run.Input{Document: json.RawMessage(greeterDoc), Variables: map[string]any{}},
			run.InvalidInput, "prompt.variables.name", "name"},
		{"unknown variable", run.Input{Document: json.RawMessage(greeterDoc), Variables: map[string]any{"name": "Ada", "nick": "A"}},
			run.InvalidInput, "prompt.variables.nick", "not a variable"},
		{"text to a structured prompt", run.Input{Document: json.RawMessage(greeterDoc), Text: "hi", Variables: map[string]any{"name": "Ada"}},
			run.InvalidInput, "input", "prompt.variables"},
		{"unsupported input item", run.Input{Document: json.RawMessage(greeterDoc), Variables: map[string]any{"name": "Ada"}, InputItems: json.RawMessage(`[{"type": "reasoning"}]`)},
			run.InvalidInput, "input[0].type", "not supported"},
		{"image content", run.Input{Document: json.RawMessage(greeterDoc), Variables: map[string]any{"name": "Ada"}, InputItems: json.RawMessage(`[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]`)},
			run.InvalidInput, "input[0].content[0].type", "not supported"},
		{"function output without call id", run.Input{Document: json.RawMessage(greeterDoc), Variables: map[string]any{"name": "Ada"}, InputItems: json.RawMessage(`[{"type": "function_call_output", "output": "x"}]`)},
			run.InvalidInput, "input[0].call_id", "required"},
		{"template fails on this input", run.Input{Document: json.RawMessage(`{"deployment": "qwen", "messages": [{"role": "user", "content": "{{ input.nothing.deeper }}"}]}`), Text: "7"},
			run.RenderFailed, "", "messages[0].content"},
		{"document does not parse", run.Input{Document: json.RawMessage(`{"deployment": "qwen", "mesages": []}`), Text: "x"},
			run.InvalidPrompt, "", "mesages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := prepare(t, tc.in)
			appErr, f := appError(t, err)
			require.Equal(t, tc.errType, appErr.Type(), "%v", err)
			require.True(t, appErr.NonRetryable())
			require.Equal(t, tc.param, f.Param)
			require.Contains(t, f.Message, tc.contains)
		})
	}
}

func TestCheckOutput(t *testing.T) {
	t.Parallel()
	acts := &activities.Activities{}
	env := newActivityEnv(acts)
	check := func(content string) activities.CheckOutputResult {
		v, err := env.ExecuteLocalActivity(acts.CheckOutput, activities.CheckOutputInput{Document: json.RawMessage(greeterDoc), Content: content})
		require.NoError(t, err)
		var res activities.CheckOutputResult
		require.NoError(t, v.Get(&res))
		return res
	}

	valid := check("```json\n{\"greeting\": \"Good day, Ada.\", \"formal\": true}\n```")
	require.True(t, valid.Valid)
	require.JSONEq(t, `{"greeting": "Good day, Ada.", "formal": true}`, string(valid.Parsed))

	wrong := check(`{"greeting": 3, "extra": 1}`)
	require.False(t, wrong.Valid)
	require.Empty(t, wrong.Parsed)
	require.Contains(t, wrong.Message, "does not match the output schema")
	require.Len(t, wrong.Problems, 3)
	require.Contains(t, wrong.Problems[0], "output.extra")
	require.Contains(t, wrong.Problems[1], "output.formal")
	require.Contains(t, wrong.Problems[2], "output.greeting")

	notJSON := check("Hello Ada!")
	require.False(t, notJSON.Valid)
	require.Contains(t, notJSON.Message, "not valid JSON")
}

// TestPrepareRunRefusesForeignRuns: a run is refused unless its project
// exists and its prompt version and prompt deployment are that project's,
// whoever started the workflow.
func TestPrepareRunRefusesForeignRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	other, err := b.q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "other-" + uuid.NewString()[:8]})
	require.NoError(t, err)
	savePrompt := func(project uuid.UUID, name string) uuid.UUID {
		p, err := b.q.CreatePrompt(ctx, dbsqlc.CreatePromptParams{ProjectID: project, Name: name, Tags: []string{}})
		require.NoError(t, err)
		_, err = b.q.CreatePromptVersion(ctx, dbsqlc.CreatePromptVersionParams{PromptID: p.ID, Version: 1, StateKey: name + "/1"})
		require.NoError(t, err)
		_, err = b.q.CreatePromptDeployment(ctx, dbsqlc.CreatePromptDeploymentParams{ProjectID: project, Name: name, PromptID: &p.ID, Settings: []byte(`{}`)})
		require.NoError(t, err)
		return p.ID
	}
	mine := savePrompt(b.project, "greeter")
	mine2 := savePrompt(b.project, "farewell")
	theirs := savePrompt(other.ID, "their-greeter")

	in := func(project, prompt uuid.UUID, version int32, deployment string) run.Input {
		return run.Input{
			ProjectID: project, PromptID: prompt, PromptVersion: version, Deployment: deployment,
			Document: json.RawMessage(greeterDoc), Variables: map[string]any{"name": "Ada"},
		}
	}
	prepareWith := func(in run.Input) error {
		_, err := b.env.ExecuteLocalActivity(b.acts.PrepareRun, in)
		return err
	}

	t.Run("accepted", func(t *testing.T) {
		require.NoError(t, prepareWith(in(b.project, mine, 1, "greeter")), "a deployed run")
		require.NoError(t, prepareWith(in(b.project, mine, 1, "")), "a saved version without a deployment")
		require.NoError(t, prepareWith(in(b.project, uuid.Nil, 0, "")), "a playground run")
	})
	for _, tc := range []struct {
		name string
		in   run.Input
	}{
		{"prompt of another project", in(b.project, theirs, 1, "")},
		{"prompt of another project with its deployment", in(b.project, theirs, 1, "their-greeter")},
		{"deployment of another project", in(b.project, mine, 1, "their-greeter")},
		{"deployment serving another prompt", in(b.project, mine, 1, "farewell")},
		{"deployment without a prompt", in(b.project, uuid.Nil, 0, "greeter")},
		{"model deployment", in(b.project, mine, 1, "qwen")},
		{"version that does not exist", in(b.project, mine2, 2, "farewell")},
		{"missing project", in(uuid.New(), uuid.Nil, 0, "")},
		{"missing project claiming another's prompt", in(uuid.New(), theirs, 1, "their-greeter")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			appErr, f := appError(t, prepareWith(tc.in))
			require.Equal(t, run.RunRefused, appErr.Type())
			require.True(t, appErr.NonRetryable())
			require.NotContains(t, f.Message, "farewell", "the caller is not told what exists")
		})
	}
}

// TestPrepareRunToolMessages: a document's function calls and the tool
// messages answering them go upstream in OpenAI's chat format.
func TestPrepareRunToolMessages(t *testing.T) {
	t.Parallel()
	res, err := prepare(t, run.Input{Text: "Oslo", Document: json.RawMessage(`{"deployment": "qwen", "messages": [
		{"role": "user", "content": "Weather in Paris?"},
		{"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
		{"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
		{"role": "assistant", "content": "21 C in Paris."},
		{"role": "user", "content": "And in {{ input }}?"}]}`)})
	require.NoError(t, err)
	raw, err := json.Marshal(res.Messages)
	require.NoError(t, err)
	require.JSONEq(t, `[
		{"role": "user", "content": "Weather in Paris?"},
		{"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
		{"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
		{"role": "assistant", "content": "21 C in Paris."},
		{"role": "user", "content": "And in Oslo?"}]`, string(raw))
}
