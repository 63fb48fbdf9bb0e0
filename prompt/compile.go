package prompt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/budhq/bud"
	"github.com/budhq/bud/strictschema"
)

// Compiled is a valid document made ready to run: templates parsed in their
// sandbox and input and output schemas compiled, once. It is safe for
// concurrent use.
type Compiled struct {
	input        Shape
	output       Shape
	templates    []compiledTemplate
	inputSchema  *jsonschema.Schema
	inputJSON    json.RawMessage
	outputSchema *jsonschema.Schema
	outputJSON   json.RawMessage
	outputFormat OutputFormat
	// inputRules and outputRules are the translated CEL rules; judgeRules
	// the output rules a model judges.
	inputRules  []compiledRule
	outputRules []compiledRule
	judgeRules  []JudgeRule
}

type compiledTemplate struct {
	field string // where the template is in the document, for errors
	role  string
	t     *template
	// toolCalls and toolCallID are the message's, sent as written.
	toolCalls  []ToolCall
	toolCallID string
}

// Compile validates d (without the project checks of a Checker; those belong
// to saving) and prepares it to run. An invalid document gives the same
// *bud.Error as Validate. d must not change afterwards.
func Compile(d *Document) (*Compiled, error) {
	if err := d.Validate(Checker{}); err != nil {
		return nil, err
	}
	sb := newSandbox()
	c := &Compiled{input: d.Input, output: d.Output}
	add := func(field string, m Message) error {
		t, err := sb.parse(field, m.Content)
		if err != nil {
			return fmt.Errorf("prompt: compile %s: %w", field, err)
		}
		c.templates = append(c.templates, compiledTemplate{field: field, role: m.Role, t: t, toolCalls: m.ToolCalls, toolCallID: m.ToolCallID})
		return nil
	}
	if d.SystemPrompt != "" {
		if err := add("system_prompt", Message{Role: RoleSystem, Content: d.SystemPrompt}); err != nil {
			return nil, err
		}
	}
	for i, m := range d.Messages {
		if err := add(fmt.Sprintf("messages[%d].content", i), m); err != nil {
			return nil, err
		}
	}
	var err error
	if d.Input.Structured() {
		if c.inputSchema, c.inputJSON, err = compileShape(d.Input); err != nil {
			return nil, fmt.Errorf("prompt: compile input schema: %w", err)
		}
	}
	if c.inputRules, err = compileRules(d, DirectionInput); err != nil {
		return nil, err
	}
	if c.outputRules, err = compileRules(d, DirectionOutput); err != nil {
		return nil, err
	}
	for _, s := range d.RuleSites() {
		if s.Rule.Judge() {
			c.judgeRules = append(c.judgeRules, JudgeRule{Path: s.Path, Rule: s.Rule.Rule, steps: s.steps})
		}
	}
	if d.Output.Structured() {
		if c.outputSchema, c.outputJSON, err = compileShape(d.Output); err != nil {
			return nil, fmt.Errorf("prompt: compile output schema: %w", err)
		}
		if c.outputFormat, err = outputFormat(d.Output, c.outputJSON); err != nil {
			return nil, fmt.Errorf("prompt: output format: %w", err)
		}
	}
	return c, nil
}

func compileShape(s Shape) (*jsonschema.Schema, json.RawMessage, error) {
	schema := objectSchema(s.Variables)
	raw, err := json.Marshal(schema)
	if err != nil {
		return nil, nil, fmt.Errorf("encode: %w", err)
	}
	sch, err := compileSchemaJSON(raw)
	if err != nil {
		return nil, nil, err
	}
	return sch, raw, nil
}

// InputSchema is the JSON Schema of prompt.variables for a structured input,
// or nil for a text input.
func (c *Compiled) InputSchema() json.RawMessage { return bytes.Clone(c.inputJSON) }

// OutputSchema is the JSON Schema a structured reply must match — an object
// with the output variables as properties, the required ones listed and no
// others allowed — ready to send as response_format json_schema; nil for a
// text output.
func (c *Compiled) OutputSchema() json.RawMessage { return bytes.Clone(c.outputJSON) }

// OutputFormat is how a structured output is asked of the model, in a
// response_format of type json_schema.
type OutputFormat struct {
	// Schema is the schema to send: the strict one (every property
	// required, optional ones nullable, additionalProperties false at every
	// level, only the keywords strict mode supports) when Strict, else the
	// full output schema.
	Schema json.RawMessage
	// Strict says the schema follows OpenAI's strict-mode rules, so the
	// upstream may enforce it ("strict": true).
	Strict bool
	// NotStrictReason says why a schema goes non-strict: strict mode cannot
	// express it within its limits.
	NotStrictReason string
}

func outputFormat(s Shape, full json.RawMessage) (OutputFormat, error) {
	raw, err := json.Marshal(strictObjectSchema(s.Variables))
	if err != nil {
		return OutputFormat{}, fmt.Errorf("encode: %w", err)
	}
	if problems := strictschema.CheckJSON(raw); len(problems) > 0 {
		return OutputFormat{Schema: full, NotStrictReason: "the output schema is beyond OpenAI's strict mode: " + strictschema.Join(problems)}, nil
	}
	return OutputFormat{Schema: raw, Strict: true}, nil
}

// OutputFormat is the response format of a structured output (see
// OutputFormat); its zero value for a text output. Whatever the schema sent
// leaves out, ValidateOutput still checks.
func (c *Compiled) OutputFormat() OutputFormat {
	f := c.outputFormat
	f.Schema = bytes.Clone(f.Schema)
	return f
}

// ValidateInput checks a run's input and returns the variables to render
// with. A text-input prompt takes text, which must not be empty, and no
// variables; it renders with {"input": text}. A structured prompt takes
// variables and no text; defaults fill absent variables (and absent fields
// of objects that are present), and the result must match the input schema.
// Numbers come back as int64 when whole, else float64. Problems come back
// together as a *bud.Error with code EINVALID whose Fields are keyed by the
// request's path, "prompt.variables.<name>" (nested:
// "prompt.variables.address.city", in arrays "prompt.variables.tags[1]"),
// each message naming the constraint broken ("must be >= 18 (ge)").
func (c *Compiled) ValidateInput(text string, variables map[string]any) (map[string]any, error) {
	p := map[string]string{}
	if !c.input.Structured() {
		if len(variables) > 0 {
			p["prompt.variables"] = "must be empty: this prompt takes text input"
		}
		if text == "" {
			p["input"] = "is required"
		}
		if len(p) > 0 {
			return nil, problemsError(bud.EINVALID, "invalid input", p)
		}
		return map[string]any{"input": text}, nil
	}
	if text != "" {
		p["input"] = "must be empty: this prompt takes its input as prompt.variables"
	}
	vars := map[string]any{}
	if len(variables) > 0 {
		n, err := normalize(variables)
		if err != nil {
			p["prompt.variables"] = "must hold only JSON values"
			return nil, problemsError(bud.EINVALID, "invalid input", p)
		}
		vars = n.(map[string]any)
	}
	applyDefaults(vars, c.input.Variables)
	normalizeStrings(vars, c.input.Variables)
	if err := c.inputSchema.Validate(vars); err != nil {
		for k, msg := range fieldProblems(err, vars, "prompt.variables", "is not a variable of this prompt") {
			p[k] = msg
		}
	}
	digitProblems(p, "prompt.variables", c.input.Variables, vars)
	if len(p) == 0 {
		// Rules see only values the schema accepted, typed as declared.
		ruleProblems(p, "prompt.variables", c.inputRules, vars, nil, nil, Shapes{})
	}
	if len(p) > 0 {
		return nil, problemsError(bud.EINVALID, "invalid input", p)
	}
	return vars, nil
}

// normalize turns any JSON-able Go value into the generic form templates and
// schemas work on: maps, slices, strings, bools, nil, and numbers as int64
// when whole (so that 3 renders as "3", not "3.0") or float64.
func normalize(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return numbers(out), nil
}

func numbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f)
		}
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = numbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = numbers(e)
		}
	}
	return v
}

// applyDefaults fills absent (or null) variables that have a default, and
// drops other nulls so that "null" reads as "not given".
func applyDefaults(obj map[string]any, vars []Variable) {
	for _, v := range vars {
		val, present := obj[v.Name]
		if !present || val == nil {
			delete(obj, v.Name)
			if v.hasDefault() {
				if d, err := normalize(json.RawMessage(v.Default)); err == nil {
					obj[v.Name] = d
				}
			}
			continue
		}
		switch v.Type {
		case TypeObject:
			if m, ok := val.(map[string]any); ok {
				applyDefaults(m, v.Variables)
			}
		case TypeArray:
			if arr, ok := val.([]any); ok && v.Items != nil && v.Items.Type == TypeObject {
				for _, e := range arr {
					if m, ok := e.(map[string]any); ok {
						applyDefaults(m, v.Items.Variables)
					}
				}
			}
		}
	}
}

// normalizeStrings applies the normalisers of each variable of obj
// (strip_whitespace, to_lower, to_upper), in nested objects and arrays too.
func normalizeStrings(obj map[string]any, vars []Variable) {
	for _, v := range vars {
		if val, ok := obj[v.Name]; ok {
			obj[v.Name] = normalizeValue(v, val)
		}
	}
}

func normalizeValue(v Variable, val any) any {
	switch v.Type {
	case TypeString:
		s, ok := val.(string)
		if !ok || v.Validation == nil || v.Validation.Basic == nil {
			return val
		}
		b := v.Validation.Basic
		if b.StripWhitespace {
			s = strings.TrimSpace(s)
		}
		switch {
		case b.ToLower:
			s = strings.ToLower(s)
		case b.ToUpper:
			s = strings.ToUpper(s)
		}
		return s
	case TypeObject:
		if m, ok := val.(map[string]any); ok {
			normalizeStrings(m, v.Variables)
		}
	case TypeArray:
		if arr, ok := val.([]any); ok && v.Items != nil {
			for i, e := range arr {
				arr[i] = normalizeValue(*v.Items, e)
			}
		}
	}
	return val
}

// digitProblems adds to p, keyed below prefix, the numbers of obj that
// have more digits than their variable's max_digits or decimal_places
// allow, which JSON Schema cannot say.
func digitProblems(p map[string]string, prefix string, vars []Variable, obj map[string]any) {
	for _, v := range vars {
		if val, ok := obj[v.Name]; ok {
			valueDigitProblems(p, joinPath(prefix, v.Name), v, val)
		}
	}
}

func valueDigitProblems(p map[string]string, path string, v Variable, val any) {
	switch v.Type {
	case TypeInteger, TypeNumber:
		if v.Validation == nil || v.Validation.Basic == nil {
			return
		}
		b := v.Validation.Basic
		digits, decimals, ok := decimalDigits(val)
		if !ok {
			return
		}
		add := func(msg string) {
			if prev, ok := p[path]; ok {
				msg = prev + "; " + msg
			}
			p[path] = msg
		}
		if b.MaxDigits != nil && digits > *b.MaxDigits {
			add(fmt.Sprintf("must have at most %d digits (max_digits)", *b.MaxDigits))
		}
		if b.DecimalPlaces != nil && decimals > *b.DecimalPlaces {
			add(fmt.Sprintf("must have at most %d decimal places (decimal_places)", *b.DecimalPlaces))
		}
	case TypeObject:
		if m, ok := val.(map[string]any); ok {
			digitProblems(p, path, v.Variables, m)
		}
	case TypeArray:
		if arr, ok := val.([]any); ok && v.Items != nil {
			for i, e := range arr {
				valueDigitProblems(p, fmt.Sprintf("%s[%d]", path, i), *v.Items, e)
			}
		}
	}
}

// decimalDigits counts a number's digits as pydantic counts a Decimal's:
// all of them but leading zeros, and those after the decimal point, in its
// shortest decimal form; ok is false for anything but a number.
func decimalDigits(val any) (digits, decimals int, ok bool) {
	var f float64
	switch n := val.(type) {
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return len(strings.TrimLeft(strconv.FormatInt(i, 10), "-0")), 0, true
		}
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, 0, false
		}
	case int64:
		return len(strings.TrimLeft(strconv.FormatInt(n, 10), "-0")), 0, true
	case float64:
		f = n
	default:
		return 0, 0, false
	}
	whole, frac, _ := strings.Cut(strconv.FormatFloat(math.Abs(f), 'f', -1, 64), ".")
	whole = strings.TrimLeft(whole, "0")
	return len(whole) + len(frac), len(frac), true
}

// RenderError is a template that failed to render: where it is in the
// document and why. Limits broken have ErrLimit in their chain.
type RenderError struct {
	Field string // "system_prompt", "messages[2].content"
	Err   error
}

// Error implements error.
func (e *RenderError) Error() string { return e.Field + ": " + cleanRenderError(e.Err.Error()) }

// Fragments gonja adds to an error on its way out through the sandbox's
// guards; they name internals, not the author's template.
var (
	guardFilterNoise = regexp.MustCompile(`unable to evaluate filter &\{<Token[^>]*> bud:[a-z]+ \[[^\]]*\] map\[[^\]]*\]\}: |invalid call to filter 'bud:[a-z]+': `)
	filteredNoise    = regexp.MustCompile(`filtered_expression\(([^()]*(?:\([^()]*\))?[^()]*)\)`)
)

func cleanRenderError(msg string) string {
	msg = strings.TrimPrefix(msg, "unable to execute template: ")
	msg = guardFilterNoise.ReplaceAllString(msg, "")
	for {
		next := filteredNoise.ReplaceAllString(msg, "$1")
		if next == msg {
			return msg
		}
		msg = next
	}
}

// Unwrap returns the cause.
func (e *RenderError) Unwrap() error { return e.Err }

// renderGrace is how long Render waits past the deadline for the render to
// notice it on its own, which gives the clearer error.
const renderGrace = 100 * time.Millisecond

// Render renders the system prompt (when not empty) as a "system" message,
// then every message in order, keeping those that render empty. vars are
// what ValidateInput returned. Declared variables that are absent read as
// none. A render runs in the sandbox with its limits (MaxRenderBytes in all,
// RenderTimeout, MaxLoopIterations, …); a failure is a *RenderError.
func (c *Compiled) Render(vars map[string]any) ([]Message, error) {
	data := vars
	if c.input.Structured() {
		data = withAbsent(vars, c.input.Variables)
	}
	b := &budget{deadline: time.Now().Add(RenderTimeout)}
	type result struct {
		msgs []Message
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		field := "template"
		defer func() {
			// A panic inside gonja (an integer divided by zero, say) is a
			// template that cannot render, not a reason to stop the worker.
			if r := recover(); r != nil {
				res = result{err: fmt.Errorf("prompt: render: %w", &RenderError{Field: field, Err: fmt.Errorf("template failed: %v", r)})}
			}
			done <- res
		}()
		res.msgs, res.err = c.render(data, b, &field)
	}()
	timer := time.NewTimer(RenderTimeout + renderGrace)
	defer timer.Stop()
	select {
	case res := <-done:
		return res.msgs, res.err
	case <-timer.C:
		// The render goroutine stops at its next budget check.
		b.stop.Store(true)
		return nil, fmt.Errorf("prompt: render: %w", &RenderError{Field: "template", Err: fmt.Errorf("%w: rendering took longer than %s", ErrLimit, RenderTimeout)})
	}
}

func (c *Compiled) render(data map[string]any, b *budget, field *string) ([]Message, error) {
	msgs := make([]Message, 0, len(c.templates))
	for _, ct := range c.templates {
		*field = ct.field
		w := &renderWriter{b: b}
		if err := ct.t.render(w, data, b); err != nil {
			err = limitError(err, b)
			return nil, fmt.Errorf("prompt: render: %w", &RenderError{Field: ct.field, Err: err})
		}
		msgs = append(msgs, Message{Role: ct.role, Content: w.sb.String(), ToolCalls: ct.toolCalls, ToolCallID: ct.toolCallID})
	}
	return msgs, nil
}

// limitError returns the limit a failed render broke, if any, in place of
// gonja's account of where it surfaced. Methods cannot reach the render's
// budget, and gonja keeps only the text of their errors, so a limit they
// report is recognised by ErrLimit's text, which only this package writes.
func limitError(err error, b *budget) error {
	if b.err != nil {
		return b.err
	}
	marker := ErrLimit.Error() + ": "
	if i := strings.LastIndex(err.Error(), marker); i >= 0 {
		return fmt.Errorf("%w: %s", ErrLimit, err.Error()[i+len(marker):])
	}
	return err
}

// withAbsent copies vars, setting declared variables that are absent to nil
// (in nested objects too), so that {% if nickname %} works under strict
// undefined checking.
func withAbsent(vars map[string]any, decl []Variable) map[string]any {
	out := make(map[string]any, len(vars)+len(decl))
	for k, v := range vars {
		out[k] = v
	}
	for _, d := range decl {
		v, ok := out[d.Name]
		if !ok {
			out[d.Name] = nil
			continue
		}
		switch d.Type {
		case TypeObject:
			if m, ok := v.(map[string]any); ok {
				out[d.Name] = withAbsent(m, d.Variables)
			}
		case TypeArray:
			if arr, ok := v.([]any); ok && d.Items != nil && d.Items.Type == TypeObject {
				cp := make([]any, len(arr))
				for i, e := range arr {
					if m, ok := e.(map[string]any); ok {
						cp[i] = withAbsent(m, d.Items.Variables)
					} else {
						cp[i] = e
					}
				}
				out[d.Name] = cp
			}
		}
	}
	return out
}

// ValidateOutput checks a model's reply. A text output is returned as is. A
// structured one must be JSON (a surrounding ``` fence is tolerated) that
// matches the output schema once the output variables' defaults fill the
// fields it leaves out or sets to null (null is how a strict schema lets a
// model leave an optional field out, so it reads as absent); it is returned
// decoded, defaults applied, numbers as in ValidateInput. Problems come back
// together as a *bud.Error with code EINVALID, Fields keyed
// "output.<field>", and a message listing them all, ready to quote in a
// repair prompt.
func (c *Compiled) ValidateOutput(content string) (any, error) {
	return c.ValidateOutputFor(content, nil)
}

// ValidateOutputFor is ValidateOutput for a run whose input variables (as
// ValidateInput returned them) the output's custom rules may read. Custom
// CEL rules are checked once the reply matches the schema; a value a rule
// refuses is a problem at its path that quotes the rule's text.
func (c *Compiled) ValidateOutputFor(content string, input map[string]any) (any, error) {
	if !c.output.Structured() {
		return content, nil
	}
	text := stripFence(content)
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return nil, problemsError(bud.EINVALID, "the reply is not valid JSON", map[string]string{"output": "must be a JSON object: " + err.Error()})
	}
	obj, isObj := v.(map[string]any)
	if isObj {
		applyDefaults(obj, c.output.Variables)
		normalizeStrings(obj, c.output.Variables)
	}
	p := map[string]string{}
	if err := c.outputSchema.Validate(v); err != nil {
		p = fieldProblems(err, v, "output", "is not a field of the output")
	}
	if isObj {
		digitProblems(p, "output", c.output.Variables, obj)
		if len(p) == 0 {
			out, _ := numbers(obj).(map[string]any)
			ruleProblems(p, "output", c.outputRules, out, out, input, Shapes{Input: c.input.Variables, Output: c.output.Variables})
		}
	}
	if len(p) > 0 {
		return nil, problemsError(bud.EINVALID, "the reply does not match the output schema", p)
	}
	return numbers(v), nil
}

// stripFence removes a Markdown code fence around a reply, which models add
// even when asked for bare JSON.
func stripFence(s string) string {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "```") || !strings.HasSuffix(t, "```") || len(t) < 6 {
		return s
	}
	t = strings.TrimSuffix(t[3:], "```")
	if nl := strings.IndexByte(t, '\n'); nl >= 0 && !strings.ContainsAny(t[:nl], "{[\"") {
		t = t[nl+1:] // the language tag: ```json
	}
	return t
}

// problemsError is an error of the given code carrying every problem, with a
// message that lists them in field order.
func problemsError(code, lead string, p map[string]string) error {
	names := make([]string, 0, len(p))
	for f := range p {
		names = append(names, f)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, f := range names {
		parts = append(parts, f+": "+p[f])
	}
	return &bud.Error{Code: code, Message: lead + ": " + strings.Join(parts, "; "), Fields: p}
}
