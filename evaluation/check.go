// Package evaluation holds what datasets and evaluations judge runs by: a
// row's checks, compiled once and run against a run's output, and the
// verdict that scores the run.
package evaluation

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"github.com/budhq/bud"
	"github.com/budhq/bud/celrule"
)

// Check types.
const (
	// CheckEquals: the structured output, or the output text when there
	// is none, equals Value.
	CheckEquals = "equals"
	// CheckContains: the output text contains Value, a string.
	CheckContains = "contains"
	// CheckMatches: the output text matches Pattern, a regular expression
	// (Go's RE2 syntax).
	CheckMatches = "matches"
	// CheckJSONPath: the value at Path in the structured output equals
	// Value.
	CheckJSONPath = "json_path"
	// CheckCEL: Expression, a CEL expression over output, text and
	// expected, is true.
	CheckCEL = "cel"
)

// ExpectedOutputCheck names the check a row's expected output makes: the
// output equals it, as CheckEquals compares.
const ExpectedOutputCheck = "expected_output"

// maxChecks bounds the checks of one row.
const maxChecks = 32

// Check is one check of a dataset row, as the caller gives it and the
// dataset keeps it.
type Check struct {
	Type string `json:"type"`
	// Name tells checks apart in the scorecard; it defaults to Type.
	Name string `json:"name,omitempty"`
	// Value is what equals and json_path compare with, and the text
	// contains looks for.
	Value json.RawMessage `json:"value,omitempty"`
	// Pattern is the regular expression of matches.
	Pattern string `json:"pattern,omitempty"`
	// Path is the JSON path of json_path: $ then .name, ['name'] or [n]
	// steps.
	Path string `json:"path,omitempty"`
	// Expression is the CEL expression of cel. Its variables: output (the
	// structured output, or the text when there is none), text (the
	// output text) and expected (the row's expected output, null when it
	// has none). It must be a boolean.
	Expression string `json:"expression,omitempty"`
}

// Output is what a run produced, as checks read it.
type Output struct {
	// Text is the final text; a structured output's JSON text.
	Text string
	// Parsed is the validated structured output; nil for a text output.
	Parsed json.RawMessage
}

// structured reports whether the output has a structured value.
func (o Output) structured() bool {
	return len(o.Parsed) > 0 && string(o.Parsed) != "null"
}

// Compared is the output as candidates are compared by it, and as a row
// made from the run expects it: the structured output, else the text as a
// JSON string.
func (o Output) Compared() json.RawMessage {
	if o.structured() {
		return o.Parsed
	}
	b, _ := json.Marshal(o.Text) // a string always encodes
	return b
}

// CheckResult is one check's verdict on one run.
type CheckResult struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Passed bool   `json:"passed"`
	// Message says why a check failed.
	Message string `json:"message,omitempty"`
}

// Compiler compiles checks. Share one where many rows are compiled: the
// CEL environment, built on the first CEL check, costs more than a check
// does to compile. The zero Compiler is ready to use; it is safe for
// concurrent use and must not be copied after first use.
type Compiler struct {
	once   sync.Once
	env    *celrule.Env
	envErr error
}

// celEnv is the CEL environment, built on first use: rows without a CEL
// check never pay for it.
func (c *Compiler) celEnv() (*celrule.Env, error) {
	c.once.Do(func() { c.env, c.envErr = newCELEnv() })
	return c.env, c.envErr
}

func newCELEnv() (*celrule.Env, error) {
	env, err := celrule.NewEnv(
		celrule.Var{Name: "output", Type: celrule.Type{Kind: celrule.Dyn}},
		celrule.Var{Name: "text", Type: celrule.Type{Kind: celrule.String}},
		celrule.Var{Name: "expected", Type: celrule.Type{Kind: celrule.Dyn}},
	)
	if err != nil {
		return nil, fmt.Errorf("evaluation: CEL environment: %w", err)
	}
	return env, nil
}

// Checks are a row's checks compiled, with its expected output.
type Checks struct {
	list []compiled
}

type compiled struct {
	name, typ string
	value     any    // decoded Value, for equals and json_path
	text      string // contains
	re        *regexp.Regexp
	path      []pathStep
	program   *celrule.Program
	expected  any
}

// Compile compiles a row's checks and its expected output (nil or JSON
// null when it has none). Every problem is reported at once, keyed by its
// path below prefix ("rows[3]."): "rows[3].checks[1].expression".
func (c *Compiler) Compile(checks []Check, expected json.RawMessage, prefix string) (*Checks, error) {
	var p bud.Problems
	out := &Checks{}
	var expectedValue any
	hasExpected := len(expected) > 0 && string(expected) != "null"
	if hasExpected {
		if err := json.Unmarshal(expected, &expectedValue); err != nil {
			p.Add(prefix+"expected_output", "must be JSON")
		} else {
			out.list = append(out.list, compiled{name: ExpectedOutputCheck, typ: CheckEquals, value: expectedValue})
		}
	}
	if len(checks) > maxChecks {
		p.Add(prefix+"checks", "must hold at most %d checks", maxChecks)
		return nil, p.Err()
	}
	for i, ch := range checks {
		at := fmt.Sprintf("%schecks[%d].", prefix, i)
		k := compiled{name: ch.Name, typ: ch.Type, expected: expectedValue}
		if k.name == "" {
			k.name = ch.Type
		}
		switch ch.Type {
		case CheckEquals:
			if !decodeValue(&p, at, ch.Value, &k.value) {
				continue
			}
		case CheckContains:
			var s string
			if len(ch.Value) == 0 || json.Unmarshal(ch.Value, &s) != nil || s == "" {
				p.Add(at+"value", "must be a non-empty string")
				continue
			}
			k.text = s
		case CheckMatches:
			if ch.Pattern == "" {
				p.Add(at+"pattern", "is required: a regular expression")
				continue
			}
			re, err := regexp.Compile(ch.Pattern)
			if err != nil {
				p.Add(at+"pattern", "is not a valid regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
				continue
			}
			k.re = re
		case CheckJSONPath:
			steps, err := parsePath(ch.Path)
			if err != nil {
				p.Add(at+"path", "%s", err.Error())
				continue
			}
			if !decodeValue(&p, at, ch.Value, &k.value) {
				continue
			}
			k.path = steps
		case CheckCEL:
			prg, problem := c.compileCEL(ch.Expression)
			if problem != "" {
				p.Add(at+"expression", "%s", problem)
				continue
			}
			k.program = prg
		case "":
			p.Add(at+"type", "is required: one of equals, contains, matches, json_path, cel")
			continue
		default:
			p.Add(at+"type", "must be one of equals, contains, matches, json_path, cel")
			continue
		}
		if problem := unusedFields(ch); problem != "" {
			p.Add(at+problem, "is not used by a %s check", ch.Type)
			continue
		}
		out.list = append(out.list, k)
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeValue decodes a check's required value into v.
func decodeValue(p *bud.Problems, at string, raw json.RawMessage, v *any) bool {
	if len(raw) == 0 {
		p.Add(at+"value", "is required")
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		p.Add(at+"value", "must be JSON")
		return false
	}
	return true
}

// unusedFields names a field given that the check's type does not read, so
// that a check is never quietly other than its author meant.
func unusedFields(ch Check) string {
	uses := map[string][]string{
		CheckEquals:   {"value"},
		CheckContains: {"value"},
		CheckMatches:  {"pattern"},
		CheckJSONPath: {"path", "value"},
		CheckCEL:      {"expression"},
	}[ch.Type]
	given := map[string]bool{"value": len(ch.Value) > 0, "pattern": ch.Pattern != "", "path": ch.Path != "", "expression": ch.Expression != ""}
	for _, f := range []string{"value", "pattern", "path", "expression"} {
		if given[f] && !contains(uses, f) {
			return f
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// compileCEL compiles a CEL check; problem says what is wrong with it.
func (c *Compiler) compileCEL(expr string) (prg *celrule.Program, problem string) {
	if strings.TrimSpace(expr) == "" {
		return nil, "is required: a CEL expression"
	}
	env, err := c.celEnv()
	if err != nil {
		return nil, "cannot be compiled here"
	}
	prg, err = env.Compile(expr)
	if err != nil {
		return nil, err.Error()
	}
	return prg, ""
}

// Len is how many checks there are, the expected output's included.
func (cs *Checks) Len() int { return len(cs.list) }

// Run runs every check against out.
func (cs *Checks) Run(out Output) []CheckResult {
	res := make([]CheckResult, 0, len(cs.list))
	var parsed any
	structured := out.structured() && json.Unmarshal(out.Parsed, &parsed) == nil
	for _, k := range cs.list {
		r := CheckResult{Name: k.name, Type: k.typ}
		r.Passed, r.Message = k.run(out, parsed, structured)
		res = append(res, r)
	}
	return res
}

// Fail is every check failed for why: a run that gave no output to check.
func (cs *Checks) Fail(why string) []CheckResult {
	res := make([]CheckResult, 0, len(cs.list))
	for _, k := range cs.list {
		res = append(res, CheckResult{Name: k.name, Type: k.typ, Message: why})
	}
	return res
}

func (k compiled) run(out Output, parsed any, structured bool) (bool, string) {
	switch k.typ {
	case CheckEquals:
		if structured {
			if reflect.DeepEqual(parsed, k.value) {
				return true, ""
			}
			return false, "the structured output differs from the value"
		}
		want, ok := k.value.(string)
		if !ok {
			return false, "the output is text, and the value is not a string"
		}
		if out.Text == want {
			return true, ""
		}
		return false, "the output text differs from the value"
	case CheckContains:
		if strings.Contains(out.Text, k.text) {
			return true, ""
		}
		return false, fmt.Sprintf("the output text does not contain %q", k.text)
	case CheckMatches:
		if k.re.MatchString(out.Text) {
			return true, ""
		}
		return false, "the output text does not match the pattern"
	case CheckJSONPath:
		doc := parsed
		if !structured && json.Unmarshal([]byte(out.Text), &doc) != nil {
			return false, "the output is not JSON"
		}
		got, ok := walk(doc, k.path)
		if !ok {
			return false, "the output has nothing at the path"
		}
		if reflect.DeepEqual(got, k.value) {
			return true, ""
		}
		return false, "the value at the path differs"
	case CheckCEL:
		var output any = out.Text
		if structured {
			output = parsed
		}
		b, err := k.program.Eval(context.Background(), map[string]any{"output": output, "text": out.Text, "expected": k.expected})
		if err != nil {
			return false, "the expression failed: " + strings.TrimPrefix(err.Error(), "celrule: ")
		}
		if b {
			return true, ""
		}
		return false, "the expression is false"
	}
	return false, "unknown check"
}
