package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

// ruleReply is a translation as the model answers it; examples are JSON
// texts of values.
func ruleReply(expr string, passing, failing []string) upstreamtest.Reply {
	ex := func(values []string) []map[string]string {
		out := make([]map[string]string, len(values))
		for i, v := range values {
			out[i] = map[string]string{"value": v, "output": "", "input": ""}
		}
		return out
	}
	return upstreamtest.JSONContent(map[string]any{"expression": expr, "passing": ex(passing), "failing": ex(failing)})
}

const adultRule = "must be an adult: 18 or older"

// adultDoc takes a name and an age whose custom rule says adults only.
func adultDoc(dep string) map[string]any {
	return map[string]any{
		"deployment": dep,
		"messages":   []any{map[string]any{"role": "user", "content": "Greet {{ name }}, aged {{ age }}."}},
		"input": map[string]any{"type": "structured", "variables": []any{
			map[string]any{"name": "name", "type": "string", "required": true},
			map[string]any{"name": "age", "type": "integer", "required": true, "validation": map[string]any{"custom": []any{adultRule}}},
		}},
	}
}

func lastUserMessage(t *testing.T, rec upstreamtest.Recorded) string {
	t.Helper()
	msgs := chatMessages(t, rec)
	return msgs[len(msgs)-1]["content"].(string)
}

// TestCustomRuleTranslatedAtSave: the model's first answer does not
// compile, its second fails its own examples, its third is stored; each
// complaint goes back to the model. The next version with the same rule
// reuses the translation without asking, and a run whose input breaks the
// rule is refused naming the variable and the rule.
func TestCustomRuleTranslatedAtSave(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.up.Script(
		ruleReply("value >=", []string{"18", "40"}, []string{"17", "3"}),
		ruleReply("value > 18", []string{"18", "40"}, []string{"17", "3"}),
		ruleReply("value >= 18", []string{"18", "40"}, []string{"17", "3"}),
	)
	pr := decodeAs[promptOut](t, b.post(t, "/api/projects/"+b.project.ID.String()+"/prompts", map[string]any{
		"name": "adults", "document": adultDoc("llm"),
	}), http.StatusCreated)

	reqs := b.up.Requests()
	require.Len(t, reqs, 3)
	var first struct {
		ResponseFormat struct {
			Type       string `json:"type"`
			JSONSchema struct {
				Strict bool `json:"strict"`
			} `json:"json_schema"`
		} `json:"response_format"`
	}
	require.NoError(t, json.Unmarshal(reqs[0].Body, &first))
	require.Equal(t, "json_schema", first.ResponseFormat.Type)
	require.True(t, first.ResponseFormat.JSONSchema.Strict)
	require.Contains(t, lastUserMessage(t, reqs[0]), adultRule)
	require.Contains(t, lastUserMessage(t, reqs[1]), "does not compile")
	require.Contains(t, lastUserMessage(t, reqs[2]), "passing example 1 (value 18) gave false")

	custom := pr.Document["input"].(map[string]any)["variables"].([]any)[1].(map[string]any)["validation"].(map[string]any)["custom"].([]any)
	rule := custom[0].(map[string]any)
	require.Equal(t, adultRule, rule["rule"])
	tr := rule["translation"].(map[string]any)
	require.Equal(t, "value >= 18", tr["expression"])
	require.Equal(t, adultRule, tr["rule"])
	require.Equal(t, "llm", tr["deployment"])
	require.NotEmpty(t, tr["translated_at"])
	require.Len(t, tr["examples"].(map[string]any)["failing"], 2)

	// The same rule in the next version, sent as text: no model call.
	v2 := decodeAs[versionOut](t, b.post(t, "/api/prompts/"+pr.ID.String()+"/versions", map[string]any{"document": adultDoc("llm")}), http.StatusCreated)
	require.Len(t, b.up.Requests(), 3, "an unchanged rule is not translated again")
	custom2 := v2.Document["input"].(map[string]any)["variables"].([]any)[1].(map[string]any)["validation"].(map[string]any)["custom"].([]any)
	require.Equal(t, tr, custom2[0].(map[string]any)["translation"])

	// A run whose input breaks the rule never starts.
	e := errorOf(t, b.post(t, "/api/playground/run", map[string]any{
		"project_id": b.project.ID, "prompt_id": pr.ID, "variables": map[string]any{"name": "Ada", "age": 12},
	}), http.StatusBadRequest)
	require.Equal(t, []string{"variables.age"}, fieldNames(e.Error.Fields))
	require.Contains(t, e.Error.Fields["variables.age"], adultRule)
	require.Len(t, b.up.Requests(), 3)

	b.up.Script(upstreamtest.Echo())
	resp := decodeAs[playgroundResponse](t, b.post(t, "/api/playground/run", map[string]any{
		"project_id": b.project.ID, "prompt_id": pr.ID, "variables": map[string]any{"name": "Ada", "age": 36},
	}), http.StatusOK)
	require.Equal(t, "Greet Ada, aged 36.", resp.OutputText)
}

// TestCustomRuleUntranslatable: a model that never gets it right is a 422
// naming the rule's path, and nothing is saved.
func TestCustomRuleUntranslatable(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.deploy(t, "judge", "model-judge")
	b.up.ScriptModel("model-judge",
		upstreamtest.Text("value is an adult"),
		ruleReply("value.size() > 1", []string{"18", "40"}, []string{"17", "3"}),
		ruleReply(`value >= 18 || true`, []string{"18", "40"}, []string{"17", "3"}),
	)
	doc := adultDoc("llm")
	doc["settings"] = map[string]any{"validation_deployment": "judge"}
	e := errorOf(t, b.post(t, "/api/projects/"+b.project.ID.String()+"/prompts", map[string]any{"name": "adults", "document": doc}), http.StatusUnprocessableEntity)
	path := "document.input.variables[1].validation.custom[0]"
	require.Equal(t, []string{path}, fieldNames(e.Error.Fields))
	require.Contains(t, e.Error.Fields[path], `"judge" after 3 tries`)
	require.Contains(t, e.Error.Fields[path], "failing example 1 (value 17) gave true")
	for _, r := range b.up.Requests() {
		require.Equal(t, "model-judge", r.Model, "the validation deployment translates")
	}
	require.Len(t, b.up.Requests(), 3)
	list := decodeAs[page[promptOut]](t, b.do(t, "GET", "/api/projects/"+b.project.ID.String()+"/prompts", nil), http.StatusOK)
	require.Empty(t, list.Data)

	// The validation deployment must be a model deployment of the project.
	doc["settings"] = map[string]any{"validation_deployment": "nope"}
	e = errorOf(t, b.post(t, "/api/projects/"+b.project.ID.String()+"/prompts", map[string]any{"name": "adults", "document": doc}), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"document.settings.validation_deployment"}, fieldNames(e.Error.Fields))

	// A translation sent along must hold on its own examples.
	doc = adultDoc("llm")
	doc["input"].(map[string]any)["variables"].([]any)[1].(map[string]any)["validation"] = map[string]any{"custom": []any{map[string]any{
		"rule": adultRule, "translation": map[string]any{"rule": adultRule, "expression": "value > 100", "deployment": "llm", "translated_at": "2026-01-01T00:00:00Z",
			"examples": map[string]any{"passing": []any{map[string]any{"value": 18}, map[string]any{"value": 40}}, "failing": []any{map[string]any{"value": 1}, map[string]any{"value": 2}}}},
	}}}
	e = errorOf(t, b.post(t, "/api/projects/"+b.project.ID.String()+"/prompts", map[string]any{"name": "adults", "document": doc}), http.StatusUnprocessableEntity)
	require.Equal(t, []string{path + ".translation"}, fieldNames(e.Error.Fields))
	require.Len(t, b.up.Requests(), 3)
}

func TestValidationPreview(t *testing.T) {
	t.Parallel()
	b := runSetup(t)
	b.deploy(t, "llm", "model-llm")
	b.up.Script(ruleReply(`value.matches("^[A-Z]{3}$")`, []string{`"EUR"`, `"USD"`}, []string{`"eur"`, `"EURO"`}))
	type preview struct {
		Expression string `json:"expression"`
		Translated bool   `json:"translated"`
		Tries      int    `json:"tries"`
		Verdicts   []struct {
			Want bool `json:"want"`
			Got  bool `json:"got"`
			OK   bool `json:"ok"`
		} `json:"verdicts"`
	}
	p := decodeAs[preview](t, b.post(t, "/api/validation/preview", map[string]any{
		"project_id": b.project.ID, "type": "string", "rule": "a three-letter currency code in capitals", "direction": "input",
	}), http.StatusOK)
	require.True(t, p.Translated)
	require.Equal(t, `value.matches("^[A-Z]{3}$")`, p.Expression)
	require.Equal(t, 1, p.Tries)
	require.Len(t, p.Verdicts, 4)
	for i, v := range p.Verdicts {
		require.True(t, v.OK, "verdict %d", i)
		require.Equal(t, i < 2, v.Got)
	}

	e := errorOf(t, b.post(t, "/api/validation/preview", map[string]any{
		"project_id": b.project.ID, "type": "date", "rule": " ", "direction": "sideways",
	}), http.StatusBadRequest)
	require.Equal(t, []string{"direction", "rule", "type"}, fieldNames(e.Error.Fields))
	e = errorOf(t, b.post(t, "/api/validation/preview", map[string]any{
		"project_id": b.project.ID, "type": "string", "rule": "short", "direction": "input", "deployment": "other",
	}), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"deployment"}, fieldNames(e.Error.Fields))
	e = errorOf(t, b.post(t, "/api/validation/preview", map[string]any{
		"project_id": "00000000-0000-0000-0000-000000000001", "type": "string", "rule": "short", "direction": "input",
	}), http.StatusNotFound)
	require.Equal(t, []string{"project_id"}, fieldNames(e.Error.Fields))
	require.Len(t, b.up.Requests(), 1)
	require.True(t, strings.HasPrefix(b.up.Requests()[0].Model, "model-llm"))
}
