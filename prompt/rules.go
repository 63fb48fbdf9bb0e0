package prompt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/budhq/bud"
	"github.com/budhq/bud/celrule"
)

// Modes of a custom rule.
const (
	// ModeCEL rules are translated once, when the version is saved, into a
	// CEL expression that every value is checked with.
	ModeCEL = "cel"
	// ModeJudge rules are put to a model with each structured output, which
	// answers with a verdict and a reason: for what no predicate can say,
	// at the price of a model call per check. Output rules only.
	ModeJudge = "judge"
)

// Rule directions: what a rule checks.
const (
	DirectionInput  = "input"
	DirectionOutput = "output"
)

// CustomRule is a plain-language rule on a variable. In JSON it is the
// rule's text alone (a CEL rule not yet translated) or an object.
type CustomRule struct {
	Rule string `json:"rule"`
	// Mode is ModeCEL (the default) or ModeJudge.
	Mode string `json:"mode,omitempty"`
	// Translation is the rule as CEL, which Bud writes when the version is
	// saved; a CEL rule without one is not checked.
	Translation *Translation `json:"translation,omitempty"`
}

// Translation is a CEL rule as a model translated it and Bud checked it:
// the expression compiles against the variable's type and holds on every
// passing example and fails on every failing one.
type Translation struct {
	// Rule is the text translated; a translation of other text than the
	// rule's is stale and made again.
	Rule string `json:"rule"`
	// Expression is a CEL boolean expression over value (and, for an output
	// rule, output and input).
	Expression string       `json:"expression"`
	Examples   RuleExamples `json:"examples"`
	// Deployment is the model deployment that translated the rule.
	Deployment   string    `json:"deployment"`
	TranslatedAt time.Time `json:"translated_at"`
}

// RuleExamples are values the expression must accept and must refuse.
type RuleExamples struct {
	Passing []RuleExample `json:"passing"`
	Failing []RuleExample `json:"failing"`
}

// RuleExample is one set of values an expression is checked on: value, and
// for an output rule the whole output and the run's input (absent: empty
// objects).
type RuleExample struct {
	Value  json.RawMessage `json:"value"`
	Output json.RawMessage `json:"output,omitempty"`
	Input  json.RawMessage `json:"input,omitempty"`
}

// UnmarshalJSON reads the rule's text alone, or the object, refusing
// unknown fields.
func (r *CustomRule) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*r = CustomRule{Rule: s}
		return nil
	}
	type plain CustomRule
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("must be a rule's text or an object {rule, mode, translation}: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	*r = CustomRule(p)
	return nil
}

// MarshalJSON writes a CEL rule without a translation as its text alone.
func (r CustomRule) MarshalJSON() ([]byte, error) {
	if r.Translation == nil && (r.Mode == "" || r.Mode == ModeCEL) {
		return json.Marshal(r.Rule)
	}
	type plain CustomRule
	return json.Marshal(plain(r))
}

// Judge reports whether the rule is checked by a model call.
func (r CustomRule) Judge() bool { return r.Mode == ModeJudge }

// RuleSite is one custom rule and where it is in the document.
type RuleSite struct {
	// Path is the rule's JSON path in the document:
	// "output.variables[1].validation.custom[0]".
	Path string
	// Direction is DirectionInput or DirectionOutput.
	Direction string
	Variable  Variable
	Rule      *CustomRule
	// steps walk a value of the shape to the rule's variable: names of
	// fields, and "[]" for every item of an array.
	steps []string
}

// RuleSites lists every custom rule of d, input first, in document order;
// Rule points into d, so a caller may set its translation.
func (d *Document) RuleSites() []RuleSite {
	var out []RuleSite
	for _, dir := range []string{DirectionInput, DirectionOutput} {
		shape := &d.Input
		if dir == DirectionOutput {
			shape = &d.Output
		}
		if shape.Structured() {
			ruleSites(&out, dir, dir+".variables", nil, shape.Variables)
		}
	}
	return out
}

func ruleSites(out *[]RuleSite, dir, path string, steps []string, vars []Variable) {
	for i := range vars {
		v := &vars[i]
		vp := fmt.Sprintf("%s[%d]", path, i)
		variableRuleSites(out, dir, vp, append(steps[:len(steps):len(steps)], v.Name), v)
	}
}

func variableRuleSites(out *[]RuleSite, dir, vp string, steps []string, v *Variable) {
	if v.Validation != nil {
		for j := range v.Validation.Custom {
			*out = append(*out, RuleSite{
				Path: fmt.Sprintf("%s.validation.custom[%d]", vp, j), Direction: dir,
				Variable: *v, Rule: &v.Validation.Custom[j], steps: steps,
			})
		}
	}
	switch {
	case v.Type == TypeObject:
		ruleSites(out, dir, vp+".variables", steps, v.Variables)
	case v.Type == TypeArray && v.Items != nil:
		variableRuleSites(out, dir, vp+".items", append(steps[:len(steps):len(steps)], "[]"), v.Items)
	}
}

// CELType is the CEL type a value of v is declared with in its rules.
func CELType(v Variable) celrule.Type {
	switch v.Type {
	case TypeString, TypeEnum:
		return celrule.Type{Kind: celrule.String}
	case TypeInteger:
		return celrule.Type{Kind: celrule.Int}
	case TypeNumber:
		return celrule.Type{Kind: celrule.Double}
	case TypeBoolean:
		return celrule.Type{Kind: celrule.Bool}
	case TypeArray:
		if v.Items == nil {
			return celrule.Type{Kind: celrule.List}
		}
		elem := CELType(*v.Items)
		return celrule.Type{Kind: celrule.List, Elem: &elem}
	case TypeObject:
		return celrule.Type{Kind: celrule.Map}
	}
	return celrule.Type{Kind: celrule.Dyn}
}

// RuleEnv is the CEL environment of a rule on v: value typed as v, and for
// an output rule output and input as maps.
func RuleEnv(v Variable, direction string) (*celrule.Env, error) {
	vars := []celrule.Var{{Name: "value", Type: CELType(v)}}
	if direction == DirectionOutput {
		vars = append(vars,
			celrule.Var{Name: "output", Type: celrule.Type{Kind: celrule.Map}},
			celrule.Var{Name: "input", Type: celrule.Type{Kind: celrule.Map}})
	}
	return celrule.NewEnv(vars...)
}

// Conform makes a JSON value (as normalize gives it) fit v's CEL type: a
// whole number of a number variable becomes a double, in arrays and
// objects too, so that double arithmetic applies to it.
func Conform(v Variable, val any) any {
	switch v.Type {
	case TypeNumber:
		if i, ok := val.(int64); ok {
			return float64(i)
		}
	case TypeArray:
		arr, ok := val.([]any)
		if !ok || v.Items == nil {
			return val
		}
		out := make([]any, len(arr))
		for i, e := range arr {
			out[i] = Conform(*v.Items, e)
		}
		return out
	case TypeObject:
		m, ok := val.(map[string]any)
		if !ok {
			return val
		}
		out := make(map[string]any, len(m))
		for k, e := range m {
			out[k] = e
		}
		for _, f := range v.Variables {
			if e, ok := out[f.Name]; ok {
				out[f.Name] = Conform(f, e)
			}
		}
		return out
	}
	return val
}

// Shapes are the variables of a document's input and output, which a
// rule's output and input conform to.
type Shapes struct {
	Input  []Variable `json:"input,omitempty"`
	Output []Variable `json:"output,omitempty"`
}

// Shapes are d's structured variables.
func (d *Document) Shapes() Shapes {
	return Shapes{Input: d.Input.Variables, Output: d.Output.Variables}
}

// RuleVars are the variables of one check of a rule: value, and for an
// output rule output and input, each conformed to its declared types.
func RuleVars(v Variable, direction string, value any, output, input map[string]any, shapes Shapes) map[string]any {
	vars := map[string]any{"value": Conform(v, value)}
	if direction == DirectionOutput {
		if output == nil {
			output = map[string]any{}
		}
		if input == nil {
			input = map[string]any{}
		}
		vars["output"] = Conform(Variable{Type: TypeObject, Variables: shapes.Output}, output)
		vars["input"] = Conform(Variable{Type: TypeObject, Variables: shapes.Input}, input)
	}
	return vars
}

// ExampleVars decodes an example into the variables of a check.
func ExampleVars(v Variable, direction string, ex RuleExample, shapes Shapes) (map[string]any, error) {
	value, err := normalize(ex.Value)
	if err != nil || len(ex.Value) == 0 {
		return nil, errors.New("value must be a JSON value")
	}
	obj := func(raw json.RawMessage, name string) (map[string]any, error) {
		if len(raw) == 0 || string(raw) == "null" {
			return nil, nil
		}
		n, err := normalize(raw)
		m, ok := n.(map[string]any)
		if err != nil || !ok {
			return nil, fmt.Errorf("%s must be a JSON object", name)
		}
		return m, nil
	}
	output, err := obj(ex.Output, "output")
	if err != nil {
		return nil, err
	}
	input, err := obj(ex.Input, "input")
	if err != nil {
		return nil, err
	}
	return RuleVars(v, direction, value, output, input, shapes), nil
}

// compiledRule is a translated CEL rule ready to check values with.
type compiledRule struct {
	site RuleSite
	prg  *celrule.Program
}

// compileRules compiles the translated CEL rules of a shape. A translation
// that does not compile makes the document unusable.
func compileRules(d *Document, direction string) ([]compiledRule, error) {
	var out []compiledRule
	p := map[string]string{}
	for _, s := range d.RuleSites() {
		if s.Direction != direction || s.Rule.Judge() || s.Rule.Translation == nil {
			continue
		}
		env, err := RuleEnv(s.Variable, direction)
		if err != nil {
			return nil, err
		}
		prg, err := env.Compile(s.Rule.Translation.Expression)
		if err != nil {
			p[s.Path+".translation.expression"] = err.Error()
			continue
		}
		out = append(out, compiledRule{site: s, prg: prg})
	}
	if len(p) > 0 {
		return nil, problemsError(bud.EUNPROCESSABLE, "invalid prompt", p)
	}
	return out, nil
}

// ruleProblems checks every value the rules apply to in root (the input
// variables or the output object), adding a problem keyed below prefix for
// each value a rule refuses or cannot check, naming the rule by its text.
func ruleProblems(p map[string]string, prefix string, rules []compiledRule, root map[string]any, output, input map[string]any, shapes Shapes) {
	for _, r := range rules {
		for _, at := range walkSteps(prefix, root, r.site.steps) {
			vars := RuleVars(r.site.Variable, r.site.Direction, at.value, output, input, shapes)
			ok, err := r.prg.Eval(context.Background(), vars)
			var msg string
			switch {
			case err != nil:
				msg = fmt.Sprintf("could not be checked against the rule %q: %s", r.site.Rule.Rule, strings.TrimPrefix(err.Error(), "celrule: "))
			case !ok:
				msg = fmt.Sprintf("must satisfy the rule %q", r.site.Rule.Rule)
			default:
				continue
			}
			if prev, ok := p[at.path]; ok {
				msg = prev + "; " + msg
			}
			p[at.path] = msg
		}
	}
}

type located struct {
	path  string
	value any
}

// walkSteps finds the values at steps in root, with their request paths;
// absent and null values are not checked.
func walkSteps(prefix string, root any, steps []string) []located {
	cur := []located{{path: prefix, value: root}}
	for _, s := range steps {
		var next []located
		for _, l := range cur {
			if s == "[]" {
				arr, _ := l.value.([]any)
				for i, e := range arr {
					next = append(next, located{path: fmt.Sprintf("%s[%d]", l.path, i), value: e})
				}
				continue
			}
			m, _ := l.value.(map[string]any)
			if v, ok := m[s]; ok && v != nil {
				next = append(next, located{path: joinPath(l.path, s), value: v})
			}
		}
		cur = next
	}
	return cur
}

// JudgeRule is an output rule a model judges.
type JudgeRule struct {
	// Path is the rule's place in the document.
	Path  string
	Rule  string
	steps []string
}

// JudgeRules are the document's rules in judge mode.
func (c *Compiled) JudgeRules() []JudgeRule { return c.judgeRules }

// JudgeValue is one value a judge rule is asked about.
type JudgeValue struct {
	// Path is the value's place in the output: "output.summary".
	Path  string
	Value any
}

// Values are the values of a valid output (as ValidateOutput returned it)
// the rule applies to.
func (j JudgeRule) Values(output any) []JudgeValue {
	var out []JudgeValue
	for _, l := range walkSteps("output", output, j.steps) {
		out = append(out, JudgeValue{Path: l.path, Value: l.value})
	}
	return out
}
