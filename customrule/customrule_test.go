package customrule_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/customrule"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/strictschema"
)

func TestResponseFormatIsStrict(t *testing.T) {
	t.Parallel()
	var rf struct {
		JSONSchema struct {
			Strict bool            `json:"strict"`
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	}
	require.NoError(t, json.Unmarshal(customrule.ResponseFormat(), &rf))
	require.True(t, rf.JSONSchema.Strict)
	require.Empty(t, strictschema.CheckJSON(rf.JSONSchema.Schema))
}

func answer(expr string, passing, failing []string, output string) string {
	ex := func(values []string) []map[string]string {
		out := make([]map[string]string, len(values))
		for i, v := range values {
			out[i] = map[string]string{"value": v, "output": output, "input": ""}
		}
		return out
	}
	b, _ := json.Marshal(map[string]any{"expression": expr, "passing": ex(passing), "failing": ex(failing)})
	return string(b)
}

func TestCheck(t *testing.T) {
	t.Parallel()
	price := customrule.RuleRequest{Direction: prompt.DirectionOutput, Variable: prompt.Variable{Name: "price", Type: prompt.TypeNumber}, Rule: "at most the budget"}
	out := `{"budget": 10}`
	c := customrule.Check(answer("value <= double(output.budget)", []string{"10", "2.5"}, []string{"11", "99.9"}, out), price)
	require.Empty(t, c.Problem)
	require.Len(t, c.Verdicts, 4)

	// An integer value of a number variable is a double: double arithmetic applies.
	c = customrule.Check(answer("value * 2.0 <= 20.0", []string{"10", "2"}, []string{"11", "12"}, ""), price)
	require.Empty(t, c.Problem)

	for name, tc := range map[string]struct{ content, want string }{
		"not json":      {"value > 1", "not the JSON object"},
		"no compile":    {answer("value >", []string{"1", "2"}, []string{"3", "4"}, ""), "does not compile"},
		"wrong type":    {answer(`value.startsWith("x")`, []string{"1", "2"}, []string{"3", "4"}, ""), "does not compile"},
		"wrong example": {answer("value < 3.0", []string{"1", "5"}, []string{"3", "4"}, ""), "passing example 2 (value 5) gave false"},
		"missing key":   {answer("value < output.budget", []string{"1", "2"}, []string{"30", "40"}, ""), "could not be evaluated"},
		"few examples":  {answer("value < 3.0", []string{"1"}, []string{"3"}, ""), "at least 2"},
		"bad example":   {answer("value < 3.0", []string{"{", "1"}, []string{"3", "4"}, ""), "not JSON text"},
	} {
		c := customrule.Check(tc.content, price)
		require.Contains(t, c.Problem, tc.want, name)
	}
}
