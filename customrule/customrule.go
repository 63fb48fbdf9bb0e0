// Package customrule is the contract of translating custom rules: a
// plain-language rule on a variable goes to a model deployment, which
// answers with a CEL expression and values that must pass and fail; Bud
// compiles the expression against the variable's type (package celrule)
// and checks it on those values, and sends any complaint back for another
// try. The TranslateRules workflow drives it; BudApp starts it when a
// version is saved and for the preview endpoint. Model text is never run
// as anything but a CEL program.
package customrule

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/prompt"
)

// WorkflowName is the name TranslateRules is registered under.
const WorkflowName = "TranslateRules"

// MaxTries is how many answers a rule's translation asks of the model
// before it gives up.
const MaxTries = 3

// Timeout bounds a whole translation: BudApp waits this long for it.
const Timeout = 3 * time.Minute

// WorkflowID is the id of a translation; key says what it translates, so a
// save retried while the first still runs waits for the same workflow.
func WorkflowID(key string) string { return "rules-" + key }

// Request asks for rules to be translated by a project's model deployment.
type Request struct {
	ProjectID  uuid.UUID     `json:"project_id"`
	Deployment string        `json:"deployment"`
	Rules      []RuleRequest `json:"rules"`
}

// RuleRequest is one rule, where it is, and the variable it checks.
type RuleRequest struct {
	// Path names the rule in the caller's terms: its place in the document,
	// or "rule" in a preview.
	Path      string          `json:"path"`
	Direction string          `json:"direction"`
	Variable  prompt.Variable `json:"variable"`
	Rule      string          `json:"rule"`
	// Shapes are the document's variables, which an output rule's output
	// and input examples conform to.
	Shapes prompt.Shapes `json:"shapes"`
}

// Result holds each rule's outcome, in the order asked.
type Result struct {
	Rules []RuleResult `json:"rules"`
}

// RuleResult is a rule translated, or why it could not be.
type RuleResult struct {
	Path string `json:"path"`
	// Translation is set when a try passed every check.
	Translation *prompt.Translation `json:"translation,omitempty"`
	// Verdicts are the examples of the last try, each with its outcome.
	Verdicts []Verdict `json:"verdicts,omitempty"`
	// Problem says why the last try failed, when none passed.
	Problem string `json:"problem,omitempty"`
	// Tries is how many answers the model gave.
	Tries int `json:"tries"`
}

// Verdict is one example checked: what it should give and what it gave.
type Verdict struct {
	Example prompt.RuleExample `json:"example"`
	// Want is true for a passing example, false for a failing one.
	Want bool `json:"want"`
	// Got is what the expression gave; Error, set instead, says why it
	// gave nothing.
	Got   bool   `json:"got"`
	Error string `json:"error,omitempty"`
	OK    bool   `json:"ok"`
}

// MinExamples is how many passing and how many failing examples a
// translation needs.
const MinExamples = 2

// SystemPrompt is what the model is told translating a rule means.
const SystemPrompt = `You translate a validation rule written in plain language into one CEL (Common Expression Language) boolean expression.

The expression is true when a value satisfies the rule and false when it does not.
Variables:
- value: the value being checked, of the CEL type given.
- output (output rules only): the whole structured output, a map from field names to values.
- input (output rules only): the run's input variables, a map from names to values.
Use only CEL's standard functions and macros (size, matches with RE2 syntax, startsWith, endsWith, contains, has, all, exists, exists_one, map, filter, int, double, string, timestamp, duration) and the string extensions (lowerAscii, upperAscii, trim, split, replace, indexOf, substring, charAt, join). Never write code in any other language.

Answer with a JSON object:
- expression: the CEL expression.
- passing: at least 2 examples the expression must accept.
- failing: at least 2 examples the expression must refuse.
Each example has value (the value as JSON text, for example "\"2024-05-01\"" or "42"), output and input (JSON text of an object, or "" when the rule does not read them; always "" for input rules).`

// ResponseFormat is the response_format that asks for a translation: a
// json_schema in OpenAI's strict mode.
func ResponseFormat() json.RawMessage {
	example := map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"required":             []string{"value", "output", "input"},
		"properties": map[string]any{
			"value":  map[string]any{"type": "string", "description": "the value, as JSON text"},
			"output": map[string]any{"type": "string", "description": "the whole output as JSON text, or empty"},
			"input":  map[string]any{"type": "string", "description": "the run's input variables as JSON text, or empty"},
		},
	}
	raw, _ := json.Marshal(map[string]any{
		"type": "json_schema",
		"json_schema": map[string]any{
			"name":   "cel_rule",
			"strict": true,
			"schema": ResponseSchema(example),
		},
	})
	return raw
}

// ResponseSchema is the schema of a translation with examples shaped as
// example.
func ResponseSchema(example map[string]any) map[string]any {
	return map[string]any{
		"type":                 "object",
		"additionalProperties": false,
		"required":             []string{"expression", "passing", "failing"},
		"properties": map[string]any{
			"expression": map[string]any{"type": "string"},
			"passing":    map[string]any{"type": "array", "items": example},
			"failing":    map[string]any{"type": "array", "items": example},
		},
	}
}

// reply is the model's answer as ResponseFormat asks for it.
type reply struct {
	Expression string         `json:"expression"`
	Passing    []replyExample `json:"passing"`
	Failing    []replyExample `json:"failing"`
}

type replyExample struct {
	Value  string `json:"value"`
	Output string `json:"output"`
	Input  string `json:"input"`
}

// Messages are the first request of a rule's translation.
func Messages(r RuleRequest) []chat.Message {
	typ := prompt.CELType(r.Variable)
	var b strings.Builder
	fmt.Fprintf(&b, "Rule: %s\n", r.Rule)
	fmt.Fprintf(&b, "It is a rule on the %s of a prompt", r.Direction)
	if r.Variable.Name != "" {
		fmt.Fprintf(&b, ", on the variable %q", r.Variable.Name)
	}
	fmt.Fprintf(&b, ".\nvalue has the CEL type %s (declared type %q", typ, r.Variable.Type)
	if len(r.Variable.Options) > 0 {
		fmt.Fprintf(&b, ", one of %q", r.Variable.Options)
	}
	b.WriteString(").\n")
	if r.Variable.Description != "" {
		fmt.Fprintf(&b, "Its description: %s\n", r.Variable.Description)
	}
	if r.Direction == prompt.DirectionOutput {
		b.WriteString("output and input are available.\n")
	} else {
		b.WriteString("Only value is available.\n")
	}
	return []chat.Message{{Role: "system", Content: SystemPrompt}, {Role: "user", Content: b.String()}}
}

// Retry is the message that sends a failed try back to the model.
func Retry(problem string) string {
	return "That answer does not work: " + problem + "\nAnswer again with a corrected JSON object."
}

// Checked is one try judged: the translation when it passed, else the
// problem to send back.
type Checked struct {
	Expression string              `json:"expression,omitempty"`
	Examples   prompt.RuleExamples `json:"examples"`
	Verdicts   []Verdict           `json:"verdicts,omitempty"`
	Problem    string              `json:"problem,omitempty"`
}

// Check judges the model's answer to a translation of r: it must be the
// JSON object asked for, its expression must compile against the
// variable's type, and it must accept every passing example and refuse
// every failing one (an example that cannot be evaluated counts against
// it).
func Check(content string, r RuleRequest) Checked {
	var rep reply
	dec := json.NewDecoder(strings.NewReader(strings.TrimSpace(content)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		return Checked{Problem: "the answer is not the JSON object asked for: " + err.Error()}
	}
	var out Checked
	out.Expression = rep.Expression
	var bad []string
	convert := func(list []replyExample, kind string) []prompt.RuleExample {
		exs := make([]prompt.RuleExample, 0, len(list))
		for i, e := range list {
			ex := prompt.RuleExample{Value: json.RawMessage(e.Value)}
			if strings.TrimSpace(e.Output) != "" {
				ex.Output = json.RawMessage(e.Output)
			}
			if strings.TrimSpace(e.Input) != "" {
				ex.Input = json.RawMessage(e.Input)
			}
			if !json.Valid(ex.Value) || (ex.Output != nil && !json.Valid(ex.Output)) || (ex.Input != nil && !json.Valid(ex.Input)) {
				bad = append(bad, fmt.Sprintf("%s example %d is not JSON text", kind, i+1))
				continue
			}
			exs = append(exs, ex)
		}
		return exs
	}
	out.Examples = prompt.RuleExamples{Passing: convert(rep.Passing, "passing"), Failing: convert(rep.Failing, "failing")}
	if len(bad) > 0 {
		out.Problem = strings.Join(bad, "; ")
		return out
	}
	out.Verdicts, out.Problem = Verify(prompt.Translation{Expression: rep.Expression, Examples: out.Examples}, r.Variable, r.Direction, r.Shapes)
	return out
}

// Verify compiles a translation against v and checks it on its examples:
// problem is empty when it compiles and every example gives what it
// should.
func Verify(t prompt.Translation, v prompt.Variable, direction string, shapes prompt.Shapes) (verdicts []Verdict, problem string) {
	if len(t.Examples.Passing) < MinExamples || len(t.Examples.Failing) < MinExamples {
		return nil, fmt.Sprintf("give at least %d passing and %d failing examples", MinExamples, MinExamples)
	}
	env, err := prompt.RuleEnv(v, direction)
	if err != nil {
		return nil, "the rule's environment could not be built"
	}
	prg, err := env.Compile(t.Expression)
	if err != nil {
		return nil, "the expression " + err.Error()
	}
	var wrong []string
	check := func(exs []prompt.RuleExample, want bool) {
		for i, ex := range exs {
			vd := Verdict{Example: ex, Want: want}
			vars, err := prompt.ExampleVars(v, direction, ex, shapes)
			if err == nil {
				vd.Got, err = prg.Eval(context.Background(), vars)
			}
			kind := "passing"
			if !want {
				kind = "failing"
			}
			switch {
			case err != nil:
				vd.Error = strings.TrimPrefix(err.Error(), "celrule: ")
				wrong = append(wrong, fmt.Sprintf("%s example %d (value %s) could not be evaluated: %s", kind, i+1, ex.Value, vd.Error))
			case vd.Got != want:
				wrong = append(wrong, fmt.Sprintf("%s example %d (value %s) gave %t", kind, i+1, ex.Value, vd.Got))
			default:
				vd.OK = true
			}
			verdicts = append(verdicts, vd)
		}
	}
	check(t.Examples.Passing, true)
	check(t.Examples.Failing, false)
	if len(wrong) > 0 {
		return verdicts, "the expression is wrong on its examples: " + strings.Join(wrong, "; ")
	}
	return verdicts, ""
}

// JudgeSystemPrompt is what a model judging an output by a rule is told.
const JudgeSystemPrompt = `You judge whether one value of a structured output satisfies a rule written in plain language.
Answer with a JSON object: verdict (true when the value satisfies the rule, false otherwise) and reason (one sentence saying why).`

// JudgeMessages ask a model whether value (at path of output) satisfies
// rule.
func JudgeMessages(rule, path string, value, output json.RawMessage) []chat.Message {
	user := fmt.Sprintf("Rule: %s\nThe value at %s: %s\nThe whole output: %s", rule, path, value, output)
	return []chat.Message{{Role: "system", Content: JudgeSystemPrompt}, {Role: "user", Content: user}}
}

// JudgeResponseFormat asks for {verdict, reason} in OpenAI's strict mode.
func JudgeResponseFormat() json.RawMessage {
	raw, _ := json.Marshal(map[string]any{
		"type": "json_schema",
		"json_schema": map[string]any{
			"name": "verdict", "strict": true,
			"schema": map[string]any{
				"type": "object", "additionalProperties": false, "required": []string{"verdict", "reason"},
				"properties": map[string]any{"verdict": map[string]any{"type": "boolean"}, "reason": map[string]any{"type": "string"}},
			},
		},
	})
	return raw
}

// Judgement is a judge's answer.
type Judgement struct {
	Verdict bool   `json:"verdict"`
	Reason  string `json:"reason"`
}

// ParseJudgement reads a judge's answer; ok is false when it is not the
// object asked for.
func ParseJudgement(content string) (j Judgement, ok bool) {
	var raw struct {
		Verdict *bool  `json:"verdict"`
		Reason  string `json:"reason"`
	}
	if json.Unmarshal([]byte(strings.TrimSpace(content)), &raw) != nil || raw.Verdict == nil {
		return Judgement{}, false
	}
	return Judgement{Verdict: *raw.Verdict, Reason: raw.Reason}, true
}
