package prompt

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

func TestValidateFullDocument(t *testing.T) {
	t.Parallel()
	require.NoError(t, mustParse(t, fullDocument).Validate(project))
	require.NoError(t, mustParse(t, fullDocument).Validate(Checker{}))
}

// TestValidateRefuses is the table of invalid documents: each row breaks the
// full document and names exactly the fields that must be reported.
func TestValidateRefuses(t *testing.T) {
	t.Parallel()
	addVar := func(d *Document, v Variable) { d.Input.Variables = append(d.Input.Variables, v) }
	basic := func(d *Document, i int) *Basic {
		v := &d.Input.Variables[i]
		if v.Validation == nil {
			v.Validation = &Validation{}
		}
		if v.Validation.Basic == nil {
			v.Validation.Basic = &Basic{}
		}
		return v.Validation.Basic
	}
	nested := func(depth int) Variable {
		v := Variable{Name: "leaf", Type: TypeString}
		for range depth - 1 {
			v = Variable{Name: "level", Type: TypeObject, Variables: []Variable{v}}
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		mutate func(d *Document)
		fields []string
	}{
		{"deployment missing", func(d *Document) { d.Deployment = "" }, []string{"deployment"}},
		{"deployment not in project", func(d *Document) { d.Deployment = "ghost" }, []string{"deployment"}},
		{"deployment of a prompt", func(d *Document) { d.Deployment = "support-bot" }, []string{"deployment"}},
		{"deployment badly named", func(d *Document) { d.Deployment = "no spaces" }, []string{"deployment"}},
		{"template does not parse", func(d *Document) { d.Messages[1].Content = "Hello {{ name " }, []string{"messages[1].content"}},
		{"unknown tag", func(d *Document) { d.Messages[1].Content = "{% frobnicate %}" }, []string{"messages[1].content"}},
		{"template reads an undefined variable", func(d *Document) { d.SystemPrompt = "You are {{ persona }} in a {{ mood }} mood." }, []string{"system_prompt"}},
		{"loop and set variables are the template's own", func(d *Document) {
			d.Messages[1].Content = "{% for x in items %}{{ x }}{% endfor %}{% set y = 1 %}{{ y }}{% with z = 2 %}{{ z }}{% endwith %}{{ zzz.attr }}"
		}, []string{"messages[1].content"}},
		{"text input reads only input", func(d *Document) { d.Input = Shape{Type: ShapeText} }, []string{"messages[0].content", "messages[1].content", "system_prompt"}},
		{"template includes a file", func(d *Document) { d.Messages[0].Content = `{% include "/etc/passwd" %}` }, []string{"messages[0].content"}},
		{"template too large", func(d *Document) { d.SystemPrompt = strings.Repeat("x", MaxTemplateBytes+1) }, []string{"system_prompt"}},
		{"no system prompt nor messages", func(d *Document) { d.SystemPrompt, d.Messages = "", nil }, []string{"messages"}},
		{"too many messages", func(d *Document) {
			for range MaxMessages {
				d.Messages = append(d.Messages, Message{Role: RoleUser, Content: "hi"})
			}
		}, []string{"messages"}},
		{"message role", func(d *Document) { d.Messages[0].Role = RoleSystem; d.Messages[1].Role = "" }, []string{"messages[0].role", "messages[1].role"}},
		{"default fails its validation", func(d *Document) { d.Input.Variables[1].Default = json.RawMessage(`""`) }, []string{"input.variables[1].default"}},
		{"default of the wrong type", func(d *Document) { d.Input.Variables[2].Default = json.RawMessage(`"old"`) }, []string{"input.variables[2].default"}},
		{"pattern does not compile", func(d *Document) { basic(d, 1).Pattern = "([a-z" }, []string{"input.variables[1].validation.basic.pattern"}},
		{"pattern only Go understands", func(d *Document) { basic(d, 1).Pattern = `(?i)^\Qa.b\E$` }, []string{"input.variables[1].validation.basic.pattern"}},
		{"enum without options", func(d *Document) { addVar(d, Variable{Name: "tone", Type: TypeEnum}) }, []string{"input.variables[3].options"}},
		{"enum default not an option", func(d *Document) {
			addVar(d, Variable{Name: "tone", Type: TypeEnum, Options: []string{"formal", "casual"}, Default: json.RawMessage(`"rude"`)})
		}, []string{"input.variables[3].default"}},
		{"enum options repeated and empty", func(d *Document) {
			addVar(d, Variable{Name: "tone", Type: TypeEnum, Options: []string{"a", "", "a"}})
		}, []string{"input.variables[3].options[1]", "input.variables[3].options[2]"}},
		{"options on a string", func(d *Document) { d.Input.Variables[0].Options = []string{"a"} }, []string{"input.variables[0].options"}},
		{"min_length above max_length", func(d *Document) { basic(d, 1).MinLength = ptr(60) }, []string{"input.variables[1].validation.basic.min_length"}},
		{"ge above le", func(d *Document) { basic(d, 2).Ge = ptr(200.0) }, []string{"input.variables[2].validation.basic.ge"}},
		{"gt not below lt", func(d *Document) { b := basic(d, 2); b.Ge, b.Le, b.Gt, b.Lt = nil, nil, ptr(5.0), ptr(5.0) }, []string{"input.variables[2].validation.basic.gt"}},
		{"min_items above max_items", func(d *Document) {
			addVar(d, Variable{Name: "tags", Type: TypeArray, Items: &Variable{Type: TypeString},
				Validation: &Validation{Basic: &Basic{MinItems: ptr(3), MaxItems: ptr(2)}}})
		}, []string{"input.variables[3].validation.basic.min_items"}},
		{"constraints on the wrong type", func(d *Document) {
			b := basic(d, 2)
			b.MinLength, b.MinItems = ptr(1), ptr(1)
			basic(d, 1).Ge = ptr(1.0)
		}, []string{"input.variables[1].validation.basic.ge", "input.variables[2].validation.basic.min_items", "input.variables[2].validation.basic.min_length"}},
		{"negative lengths and multiple_of", func(d *Document) { basic(d, 1).MaxLength = ptr(-1); basic(d, 2).MultipleOf = ptr(0.0) }, []string{"input.variables[1].validation.basic.max_length", "input.variables[2].validation.basic.multiple_of"}},
		{"unknown format", func(d *Document) { basic(d, 1).Format = "phone" }, []string{"input.variables[1].validation.basic.format"}},
		{"empty custom rule", func(d *Document) { d.Input.Variables[2].Validation.Custom = []CustomRule{{Rule: " "}} }, []string{"input.variables[2].validation.custom[0]"}},
		{"duplicate variable names", func(d *Document) { addVar(d, Variable{Name: "age", Type: TypeNumber}) }, []string{"input.variables[3].name"}},
		{"bad and reserved names", func(d *Document) {
			addVar(d, Variable{Name: "first-name", Type: TypeString})
			addVar(d, Variable{Name: "loop", Type: TypeString})
			addVar(d, Variable{Type: TypeString})
		}, []string{"input.variables[3].name", "input.variables[4].name", "input.variables[5].name"}},
		{"variable types", func(d *Document) {
			addVar(d, Variable{Name: "when", Type: "date"})
			addVar(d, Variable{Name: "what"})
		}, []string{"input.variables[3].type", "input.variables[4].type"}},
		{"array without items, object without fields", func(d *Document) {
			addVar(d, Variable{Name: "tags", Type: TypeArray})
			addVar(d, Variable{Name: "address", Type: TypeObject})
			addVar(d, Variable{Name: "n", Type: TypeString, Items: &Variable{Type: TypeString}})
		}, []string{"input.variables[3].items", "input.variables[4].variables", "input.variables[5].items"}},
		{"array items with a name and a default", func(d *Document) {
			addVar(d, Variable{Name: "tags", Type: TypeArray, Items: &Variable{Name: "tag", Type: TypeString, Default: json.RawMessage(`"x"`)}})
		}, []string{"input.variables[3].items.default", "input.variables[3].items.name"}},
		{"nested too deep", func(d *Document) { addVar(d, nested(MaxNestingDepth+1)) },
			[]string{"input.variables[3]" + strings.Repeat(".variables[0]", MaxNestingDepth)}},
		{"nested as deep as allowed", func(d *Document) { addVar(d, nested(MaxNestingDepth)) }, nil},
		{"too many variables", func(d *Document) {
			for i := range MaxVariables {
				addVar(d, Variable{Name: fmt.Sprintf("v%d", i), Type: TypeString})
			}
		}, []string{"input.variables"}},
		{"input type", func(d *Document) { d.Input.Type = "json" }, []string{"input.type"}},
		{"output fields may be named like keywords", func(d *Document) {
			d.Output.Variables = append(d.Output.Variables, Variable{Name: "from", Type: TypeString}, Variable{Name: "filter", Type: TypeString})
		}, nil},
		{"structured output without variables", func(d *Document) { d.Output.Variables = nil }, []string{"output.variables"}},
		{"output variable problems", func(d *Document) {
			d.Output.Variables[1].Validation.Basic.Pattern = "x"
			d.Output.Variables = append(d.Output.Variables, Variable{Name: "answer", Type: TypeString})
		}, []string{"output.variables[1].validation.basic.pattern", "output.variables[2].name"}},
		{"model params out of range", func(d *Document) {
			d.ModelParams = json.RawMessage(`{"temperature": 5, "max_tokens": 1.5, "stream": true}`)
		}, []string{"model_params.max_tokens", "model_params.stream", "model_params.temperature"}},
		{"model params set by other fields", func(d *Document) {
			d.ModelParams = json.RawMessage(`{"response_format": {"type": "json_object"}, "tools": []}`)
		}, []string{"model_params.response_format", "model_params.tools"}},
		{"settings", func(d *Document) { d.Settings.MinConcurrency, d.Settings.MaxConcurrency = 20, 10 }, []string{"settings.min_concurrency"}},
		{"llm_retry_limit", func(d *Document) { d.LLMRetryLimit = MaxLLMRetryLimit + 1 }, []string{"llm_retry_limit"}},
		{"connection id not a uuid", func(d *Document) { d.Tools[0].ConnectionID = "slack" }, []string{"tools[0].connection_id"}},
		{"connection not in project", func(d *Document) { d.Tools[0].ConnectionID = "00000000-0000-4000-8000-000000000000" }, []string{"tools[0].connection_id"}},
		{"approval policy", func(d *Document) { d.Tools[0].RequireApproval = Approval{Policy: "sometimes"} }, []string{"tools[0].require_approval"}},
		{"approval of a tool not allowed", func(d *Document) {
			d.Tools[0].RequireApproval = Approval{Policy: ApprovalListed, Tools: []string{"echo", "rm"}}
		}, []string{"tools[0].require_approval[1]"}},
		{"function tool name", func(d *Document) { d.Tools[1].Name = "get weather" }, []string{"tools[1].name"}},
		{"function tool names unique", func(d *Document) { d.Tools = append(d.Tools, d.Tools[1]) }, []string{"tools[2].name"}},
		{"parameters not an object schema", func(d *Document) { d.Tools[1].Parameters = json.RawMessage(`{"type": "string"}`) }, []string{"tools[1].parameters"}},
		{"parameters not a JSON Schema", func(d *Document) {
			d.Tools[1].Parameters = json.RawMessage(`{"type": "object", "properties": {"city": {"type": "strnig"}}}`)
		}, []string{"tools[1].parameters"}},
		{"parameters refer outside", func(d *Document) {
			d.Tools[1].Parameters = json.RawMessage(`{"type": "object", "properties": {"city": {"$ref": "file:///etc/passwd"}}}`)
		}, []string{"tools[1].parameters"}},
		{"fields of the other tool type", func(d *Document) {
			d.Tools[0].Name = "x"
			d.Tools[1].ConnectionID = connID
		}, []string{"tools[0].name", "tools[1].connection_id"}},
		{"tool type", func(d *Document) { d.Tools[1].Type = "mcp" }, []string{"tools[1].type"}},
		{"many problems at once", func(d *Document) {
			d.Deployment = ""
			d.ModelParams = json.RawMessage(`{"temperature": 9}`)
			d.Messages[0].Role = "robot"
			d.Messages[1].Content = "{% for %}"
			d.Input.Variables[1].Default = json.RawMessage(`7`)
			basic(d, 2).MinLength = ptr(1)
			d.Tools[0].ConnectionID = "nope"
			d.Tools[1].Name = ""
			d.LLMRetryLimit = -1
			d.Settings.MaxConcurrency = 0
		}, []string{
			"deployment",
			"input.variables[1].default",
			"input.variables[2].validation.basic.min_length",
			"llm_retry_limit",
			"messages[0].role",
			"messages[1].content",
			"model_params.temperature",
			"settings.max_concurrency",
			"tools[0].connection_id",
			"tools[1].name",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := mustParse(t, fullDocument)
			tc.mutate(d)
			err := d.Validate(project)
			if tc.fields == nil {
				require.NoError(t, err)
				return
			}
			require.Equal(t, tc.fields, fieldKeys(t, err, bud.EUNPROCESSABLE))
		})
	}
}

func TestValidateMessages(t *testing.T) {
	t.Parallel()
	problem := func(mutate func(d *Document), field string) string {
		d := mustParse(t, fullDocument)
		mutate(d)
		return bud.ErrorFields(d.Validate(project))[field]
	}
	msg := problem(func(d *Document) {
		d.Messages[1].Content = "{% for x in items %}{{ x }}{% endfor %}{% set y = 1 %}{{ y }}{{ zzz }}"
	}, "messages[1].content")
	require.Equal(t, `uses undefined variables "items", "zzz"`, msg)

	msg = problem(func(d *Document) { d.Input = Shape{Type: ShapeText} }, "system_prompt")
	require.Equal(t, `uses undefined variable "persona" (a text-input prompt has only {{ input }})`, msg)

	msg = problem(func(d *Document) { d.Messages[0].Content = "Hello {{ name " }, "messages[0].content")
	require.True(t, strings.HasPrefix(msg, "template error: "), msg)

	msg = problem(func(d *Document) { d.Messages[0].Content = `{% include "/etc/passwd" %}` }, "messages[0].content")
	require.Contains(t, msg, "{% include %} is not allowed")

	msg = problem(func(d *Document) { d.Input.Variables[2].Default = json.RawMessage(`200`) }, "input.variables[2].default")
	require.Equal(t, "must be <= 150 (le)", msg)

	msg = problem(func(d *Document) { d.Deployment = "support-bot" }, "deployment")
	require.Equal(t, "must be a model deployment, not a prompt deployment", msg)

	err := mustParse(t, fullDocument)
	err.Deployment = ""
	require.Contains(t, bud.ErrorMessage(err.Validate(project)), "deployment: is required")
}

// TestValidateToolMessages: a tool message names a call of the assistant
// message before it, and every call is answered, as OpenAI-compatible
// upstreams require; each problem is named by its path.
func TestValidateToolMessages(t *testing.T) {
	t.Parallel()
	doc := func(messages string) *Document {
		return mustParse(t, `{"deployment": "qwen3-32b", "system_prompt": "hi", "messages": `+messages+`}`)
	}
	call := func(id string) string {
		return `{"id": "` + id + `", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}`
	}
	good := doc(`[
		{"role": "user", "content": "Weather in Oslo and Rome?"},
		{"role": "assistant", "tool_calls": [` + call("c1") + `, ` + call("c2") + `]},
		{"role": "tool", "tool_call_id": "c2", "content": "{\"temp_c\": 26}"},
		{"role": "tool", "tool_call_id": "c1", "content": "{{ 9 }}"},
		{"role": "assistant", "content": "Oslo 9, Rome 26."},
		{"role": "user", "content": "Thanks"}]`)
	require.NoError(t, good.Validate(Checker{}))

	for _, tc := range []struct {
		name     string
		messages string
		want     map[string]string
	}{
		{"tool message without id", `[{"role": "user", "content": "x"}, {"role": "tool", "content": "x"}]`,
			map[string]string{"messages[1].tool_call_id": "is required: the id of the call this message answers"}},
		{"tool message after no call", `[{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c1", "content": "x"}]`,
			map[string]string{"messages[1].tool_call_id": `"c1" must be the id of a call in the tool_calls of the assistant message before it`}},
		{"tool message for another call", `[{"role": "assistant", "tool_calls": [` + call("c1") + `]}, {"role": "tool", "tool_call_id": "c1", "content": "x"}, {"role": "tool", "tool_call_id": "c9", "content": "x"}]`,
			map[string]string{"messages[2].tool_call_id": `"c9" is not a call of messages[0].tool_calls`}},
		{"answered twice", `[{"role": "assistant", "tool_calls": [` + call("c1") + `]}, {"role": "tool", "tool_call_id": "c1", "content": "x"}, {"role": "tool", "tool_call_id": "c1", "content": "x"}]`,
			map[string]string{"messages[2].tool_call_id": `"c1" is already answered by messages[1]`}},
		{"answer too late", `[{"role": "assistant", "tool_calls": [` + call("c1") + `]}, {"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c1", "content": "x"}]`,
			map[string]string{
				"messages[0].tool_calls[0].id": "has no tool message answering it before messages[1]",
				"messages[2].tool_call_id":     `"c1" must be the id of a call in the tool_calls of the assistant message before it`,
			}},
		{"unanswered at the end", `[{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [` + call("c1") + `, ` + call("c2") + `]}, {"role": "tool", "tool_call_id": "c1", "content": "x"}]`,
			map[string]string{"messages[1].tool_calls[1].id": "has no tool message answering it"}},
		{"fields on the wrong role", `[{"role": "user", "content": "x", "tool_call_id": "c1", "tool_calls": [` + call("c1") + `]}]`,
			map[string]string{"messages[0].tool_call_id": "is only for tool messages", "messages[0].tool_calls": "is only for assistant messages"}},
		{"bad calls", `[{"role": "assistant", "tool_calls": [
			{"id": "", "type": "function", "function": {"name": "f", "arguments": "{}"}},
			{"id": "c1", "type": "code", "function": {"name": "get weather", "arguments": "[1]"}},
			{"id": "c1", "function": {"name": "", "arguments": "{"}}]},
			{"role": "tool", "tool_call_id": "c1", "content": "x"}]`,
			map[string]string{
				"messages[0].tool_calls[0].id":                 "is required",
				"messages[0].tool_calls[1].type":               `must be "function"`,
				"messages[0].tool_calls[1].function.name":      "must be 1 to 64 letters, digits, underscores or dashes",
				"messages[0].tool_calls[1].function.arguments": "must be a JSON object, as text",
				"messages[0].tool_calls[2].type":               `is required: "function"`,
				"messages[0].tool_calls[2].function.name":      "is required",
				"messages[0].tool_calls[2].function.arguments": "must be a JSON object, as text",
				"messages[0].tool_calls[2].id":                 "duplicates messages[0].tool_calls[1].id",
			}},
	} {
		err := doc(tc.messages).Validate(Checker{})
		require.Equal(t, tc.want, bud.ErrorFields(err), tc.name)
		require.Equal(t, bud.EUNPROCESSABLE, bud.ErrorCode(err), tc.name)
	}

	// Rendered, the calls and the ids go with their messages.
	c, err := Compile(good)
	require.NoError(t, err)
	msgs, err := c.Render(map[string]any{"input": "x"})
	require.NoError(t, err)
	require.Equal(t, []Message{
		{Role: RoleSystem, Content: "hi"},
		{Role: RoleUser, Content: "Weather in Oslo and Rome?"},
		{Role: RoleAssistant, ToolCalls: []ToolCall{
			{ID: "c1", Type: "function", Function: ToolCallFunction{Name: "get_weather", Arguments: `{"city": "Oslo"}`}},
			{ID: "c2", Type: "function", Function: ToolCallFunction{Name: "get_weather", Arguments: `{"city": "Oslo"}`}}}},
		{Role: RoleTool, ToolCallID: "c2", Content: `{"temp_c": 26}`},
		{Role: RoleTool, ToolCallID: "c1", Content: "9"},
		{Role: RoleAssistant, Content: "Oslo 9, Rome 26."},
		{Role: RoleUser, Content: "Thanks"},
	}, msgs)

	// The published schema takes such a document too.
	raw, err := json.Marshal(good)
	require.NoError(t, err)
	require.NoError(t, validateJSON(compiledDocumentSchema(t), string(raw)))
}
