package evaluation_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/evaluation"
)

func compiler(t *testing.T) *evaluation.Compiler {
	t.Helper()
	return &evaluation.Compiler{}
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// TestChecksJudgeOutputs runs each kind of check against a structured and
// a text output, passing and failing.
func TestChecksJudgeOutputs(t *testing.T) {
	c := compiler(t)
	structured := evaluation.Output{Text: `{"name":"Ada","tags":["x","y"],"age":36}`, Parsed: raw(`{"age":36,"name":"Ada","tags":["x","y"]}`)}
	text := evaluation.Output{Text: "Hello, Ada!"}
	cases := []struct {
		name  string
		check evaluation.Check
		out   evaluation.Output
		pass  bool
	}{
		{"equals structured", evaluation.Check{Type: "equals", Value: raw(`{"name":"Ada","age":36.0,"tags":["x","y"]}`)}, structured, true},
		{"equals structured differs", evaluation.Check{Type: "equals", Value: raw(`{"name":"Ada"}`)}, structured, false},
		{"equals text", evaluation.Check{Type: "equals", Value: raw(`"Hello, Ada!"`)}, text, true},
		{"equals text differs", evaluation.Check{Type: "equals", Value: raw(`"Hello"`)}, text, false},
		{"contains", evaluation.Check{Type: "contains", Value: raw(`"Ada"`)}, text, true},
		{"contains not", evaluation.Check{Type: "contains", Value: raw(`"Bob"`)}, text, false},
		{"matches", evaluation.Check{Type: "matches", Pattern: `^Hello, [A-Z][a-z]+!$`}, text, true},
		{"matches not", evaluation.Check{Type: "matches", Pattern: `^Bye`}, text, false},
		{"json_path", evaluation.Check{Type: "json_path", Path: "$.tags[1]", Value: raw(`"y"`)}, structured, true},
		{"json_path quoted", evaluation.Check{Type: "json_path", Path: "$['name']", Value: raw(`"Ada"`)}, structured, true},
		{"json_path differs", evaluation.Check{Type: "json_path", Path: "$.age", Value: raw(`37`)}, structured, false},
		{"json_path absent", evaluation.Check{Type: "json_path", Path: "$.nope", Value: raw(`1`)}, structured, false},
		{"cel structured", evaluation.Check{Type: "cel", Expression: `output.age > 30 && output.name.startsWith("A")`}, structured, true},
		{"cel false", evaluation.Check{Type: "cel", Expression: `size(output.tags) == 3`}, structured, false},
		{"cel text", evaluation.Check{Type: "cel", Expression: `text.contains("Ada") && output == text`}, text, true},
		{"cel runtime error", evaluation.Check{Type: "cel", Expression: `output.missing == 1`}, structured, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := c.Compile([]evaluation.Check{tc.check}, nil, "")
			require.NoError(t, err)
			res := cs.Run(tc.out)
			require.Len(t, res, 1)
			require.Equal(t, tc.pass, res[0].Passed, res[0].Message)
			if !tc.pass {
				require.NotEmpty(t, res[0].Message)
			}
		})
	}
}

// TestChecksRefusedByPath: every check that does not compile is named by
// its path, all at once.
func TestChecksRefusedByPath(t *testing.T) {
	c := compiler(t)
	_, err := c.Compile([]evaluation.Check{
		{Type: "contains", Value: raw(`"ok"`)},
		{Type: "cel", Expression: `output.age >`},
		{Type: "matches", Pattern: `(`},
		{Type: "json_path", Path: "name", Value: raw(`1`)},
		{Type: "cel", Expression: `text + "x"`},
		{Type: "regex"},
		{Type: "contains", Value: raw(`"x"`), Pattern: "x"},
		{Type: "equals"},
		{Type: "cel", Expression: `nosuchvar == 1`},
	}, raw(`{"a":1}`), "rows[3].")
	require.Error(t, err)
	require.Equal(t, bud.EINVALID, bud.ErrorCode(err))
	fields := bud.ErrorFields(err)
	for _, f := range []string{
		"rows[3].checks[1].expression", "rows[3].checks[2].pattern", "rows[3].checks[3].path",
		"rows[3].checks[4].expression", "rows[3].checks[5].type", "rows[3].checks[6].pattern",
		"rows[3].checks[7].value", "rows[3].checks[8].expression",
	} {
		require.Contains(t, fields, f)
	}
	require.NotContains(t, fields, "rows[3].checks[0].value")
	require.Contains(t, fields["rows[3].checks[4].expression"], "boolean")
}

// TestJudgeScoresARun: the expected output is a check of its own; a run
// without output fails every check; an invalid structured output fails
// validation; outputs are compared by value.
func TestJudgeScoresARun(t *testing.T) {
	c := compiler(t)
	cs, err := c.Compile([]evaluation.Check{{Type: "cel", Name: "greets", Expression: `output.greeting == expected.greeting`}}, raw(`{"greeting":"hi"}`), "")
	require.NoError(t, err)
	require.Equal(t, 2, cs.Len())

	v := evaluation.Judge(cs, evaluation.Run{Status: "completed", Structured: true, Output: &evaluation.Output{Text: `{ "greeting": "hi" }`, Parsed: raw(`{"greeting":"hi"}`)}})
	require.True(t, v.Passed)
	require.Equal(t, evaluation.ValidationPassed, v.Validation)
	require.Equal(t, []string{evaluation.ExpectedOutputCheck, "greets"}, []string{v.Checks[0].Name, v.Checks[1].Name})
	require.JSONEq(t, `{"greeting":"hi"}`, string(v.Compared))

	v = evaluation.Judge(cs, evaluation.Run{Status: "failed", Structured: true, ErrorCode: "InvalidOutput", Output: &evaluation.Output{Text: `{"greeting": 1}`}})
	require.False(t, v.Passed)
	require.Equal(t, evaluation.ValidationFailed, v.Validation)

	v = evaluation.Judge(cs, evaluation.Run{Status: "failed", ErrorCode: "UpstreamRejected"})
	require.False(t, v.Passed)
	require.Nil(t, v.Compared)
	for _, r := range v.Checks {
		require.False(t, r.Passed)
		require.Contains(t, r.Message, "without output")
	}
}
