package prompt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/budhq/bud"
)

// Limits on a document; beyond them a prompt is surely a mistake, and each
// costs the worker on every run.
const (
	MaxMessages     = 200
	MaxVariables    = 200 // per input or output, nested ones included
	MaxNestingDepth = 5   // levels of variables: a top-level variable is level 1
	MaxTools        = 128
	MaxOptions      = 500
	MaxPatternLen   = 1000
)

// Checker answers what validation needs to know about the project a
// document is saved in. A nil function skips its check.
type Checker struct {
	// DeploymentKind looks a deployment of the project up by name.
	DeploymentKind func(name string) (kind string, found bool)
	// ConnectionExists reports whether the project has a tool connection
	// with this id.
	ConnectionExists func(id string) bool
}

// Validate reports whether d can be saved: nil, or a *bud.Error with code
// EUNPROCESSABLE whose Fields hold every problem found, keyed by JSON path
// ("messages[2].content", "input.variables[0].default", …). Templates must
// parse in the sandbox and read only the input's variables ({{ input }} for
// text input); defaults must satisfy their own variable; constraints must
// suit their variable's type and be satisfiable; tools, model parameters,
// settings and the retry limit must be in range. c supplies the checks
// against the project.
func (d *Document) Validate(c Checker) error {
	v := &validator{sb: newSandbox()}
	v.deployment(d.Deployment, c)
	bud.CheckDefaultParams(&v.p, "model_params", d.ModelParams)
	v.modelParams(d)
	v.shape("input", d.Input)
	v.shape("output", d.Output)
	v.templates(d)
	v.tools(d.Tools, c)
	if d.LLMRetryLimit < 0 || d.LLMRetryLimit > MaxLLMRetryLimit {
		v.p.Add("llm_retry_limit", "must be between 0 and %d", MaxLLMRetryLimit)
	}
	d.Settings.Check(&v.p, "settings")
	if d.Settings.ValidationDeployment != "" {
		v.modelDeployment("settings.validation_deployment", d.Settings.ValidationDeployment, c)
	}
	if d.Settings.Autoscale {
		v.p.Add("settings.autoscale", "%s", bud.AutoscaleIsTheWorkers)
	}
	if len(v.p) == 0 {
		return nil
	}
	return problemsError(bud.EUNPROCESSABLE, "invalid prompt", v.p)
}

type validator struct {
	p  bud.Problems
	sb *sandbox
}

func (v *validator) deployment(name string, c Checker) {
	if name == "" {
		v.p.Add("deployment", "is required")
		return
	}
	v.modelDeployment("deployment", name, c)
}

// modelDeployment checks that name is a model deployment of the project.
func (v *validator) modelDeployment(field, name string, c Checker) {
	before := len(v.p)
	bud.CheckName(&v.p, field, name)
	if len(v.p) > before || c.DeploymentKind == nil {
		return
	}
	kind, found := c.DeploymentKind(name)
	switch {
	case !found:
		v.p.Add(field, "no deployment named %q in this project", name)
	case kind != bud.KindModel:
		v.p.Add(field, "must be a model deployment, not a %s deployment", kind)
	}
}

// modelParams refuses parameters that other fields of the document set.
func (v *validator) modelParams(d *Document) {
	var params map[string]any
	if json.Unmarshal(d.ModelParams, &params) != nil {
		return // CheckDefaultParams has said so
	}
	if _, ok := params["response_format"]; ok && d.Output.Structured() {
		v.p.Add("model_params.response_format", "is set from the structured output; remove it")
	}
	for _, k := range []string{"tools", "tool_choice"} {
		if _, ok := params[k]; ok {
			v.p.Add("model_params."+k, "is set from the prompt's tools; remove it")
		}
	}
}

func (v *validator) shape(path string, s Shape) {
	switch s.Type {
	case "":
		v.p.Add(path+".type", "is required")
		return
	case ShapeText:
		if len(s.Variables) > 0 {
			v.p.Add(path+".variables", "must be empty for %s %s", ShapeText, path)
		}
		return
	case ShapeStructured:
	default:
		v.p.Add(path+".type", "must be %q or %q", ShapeText, ShapeStructured)
		return
	}
	if len(s.Variables) == 0 {
		v.p.Add(path+".variables", "a structured %s needs at least one variable", path)
		return
	}
	before := len(v.p)
	count := 0
	v.variables(path+".variables", s.Variables, 1, &count, path == "input")
	if count > MaxVariables {
		v.p.Add(path+".variables", "must have at most %d variables, nested ones included", MaxVariables)
	}
	if len(v.p) > before {
		return
	}
	// Every variable checks out, so the schema should compile; if it does
	// not, say so rather than fail at the first run.
	if _, err := compileSchema(objectSchema(s.Variables)); err != nil {
		v.p.Add(path, "schema error: %s", schemaErrorText(err))
	}
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedName reports whether a variable name would be read by a template
// as something else: a Jinja keyword or literal, or a name the template
// language itself provides.
func reservedName(name string) bool {
	switch name {
	case "and", "or", "not", "in", "is", "if", "else", "elif", "endif", "for", "endfor",
		"set", "endset", "with", "endwith", "block", "endblock", "macro", "endmacro",
		"call", "endcall", "filter", "endfilter", "raw", "endraw", "include", "import",
		"from", "extends", "as", "recursive", "ignore", "missing", "context", "without",
		"do", "break", "continue", "autoescape", "endautoescape",
		"true", "false", "none", "True", "False", "None",
		"loop", "self", "super", "caller", "varargs", "kwargs", "range", "dict", "cycler",
		"joiner", "namespace":
		return true
	}
	return false
}

// variables checks sibling variables; input is set for the input's, whose
// names templates read and so must not be reserved words.
func (v *validator) variables(path string, vars []Variable, depth int, count *int, input bool) {
	seen := map[string]int{}
	for i, vr := range vars {
		vp := fmt.Sprintf("%s[%d]", path, i)
		v.variable(vp, vr, depth, count, false, input)
		if vr.Name == "" {
			continue
		}
		if j, dup := seen[vr.Name]; dup {
			v.p.Add(vp+".name", "duplicates %s[%d].name %q", path, j, vr.Name)
		} else {
			seen[vr.Name] = i
		}
	}
}

func (v *validator) variable(path string, vr Variable, depth int, count *int, item, input bool) {
	*count++
	if depth > MaxNestingDepth {
		v.p.Add(path, "is nested more than %d levels deep", MaxNestingDepth)
		return
	}
	before := len(v.p)
	switch {
	case item && vr.Name != "":
		v.p.Add(path+".name", "must be empty: array items take their array's name")
	case item:
	case vr.Name == "":
		v.p.Add(path+".name", "is required")
	case len(vr.Name) > bud.MaxNameLen:
		v.p.Add(path+".name", "must be at most %d characters", bud.MaxNameLen)
	case !identifier.MatchString(vr.Name):
		v.p.Add(path+".name", "must start with a letter or underscore and contain only letters, digits and underscores")
	case input && reservedName(vr.Name):
		v.p.Add(path+".name", "%q is reserved in templates", vr.Name)
	}
	switch vr.Type {
	case TypeString, TypeInteger, TypeNumber, TypeBoolean, TypeEnum, TypeArray, TypeObject:
	case "":
		v.p.Add(path+".type", "is required")
	default:
		v.p.Add(path+".type", "must be one of %q, %q, %q, %q, %q, %q, %q",
			TypeString, TypeInteger, TypeNumber, TypeBoolean, TypeEnum, TypeArray, TypeObject)
	}
	bud.CheckText(&v.p, path+".description", vr.Description, bud.MaxDescriptionLen)
	v.options(path, vr)

	switch {
	case vr.Type != TypeArray && vr.Items != nil:
		v.p.Add(path+".items", "is only for array variables")
	case vr.Type == TypeArray && vr.Items == nil:
		v.p.Add(path+".items", "is required for an array")
	case vr.Type == TypeArray:
		v.variable(path+".items", *vr.Items, depth+1, count, true, input)
	}
	switch {
	case vr.Type != TypeObject && len(vr.Variables) > 0:
		v.p.Add(path+".variables", "is only for object variables")
	case vr.Type == TypeObject && len(vr.Variables) == 0:
		v.p.Add(path+".variables", "an object needs at least one variable")
	case vr.Type == TypeObject:
		v.variables(path+".variables", vr.Variables, depth+1, count, input)
	}
	if vr.Validation != nil {
		if vr.Validation.Basic != nil {
			v.basic(path+".validation.basic", vr.Type, *vr.Validation.Basic)
		}
		for i, rule := range vr.Validation.Custom {
			v.customRule(fmt.Sprintf("%s.validation.custom[%d]", path, i), rule, input)
		}
	}
	if !vr.hasDefault() {
		return
	}
	if item {
		v.p.Add(path+".default", "must be empty: array items take no default")
		return
	}
	if len(v.p) == before {
		v.defaultValue(path, vr)
	}
}

// customRule checks a rule's text, mode and translation; whether the
// translation compiles and holds on its examples is for Compile and the
// translation step to say.
func (v *validator) customRule(rp string, r CustomRule, input bool) {
	textPath := rp
	if r.Mode != "" || r.Translation != nil {
		textPath = rp + ".rule"
	}
	if strings.TrimSpace(r.Rule) == "" {
		v.p.Add(textPath, "must not be empty")
	}
	bud.CheckText(&v.p, textPath, r.Rule, bud.MaxDescriptionLen)
	switch r.Mode {
	case "", ModeCEL:
	case ModeJudge:
		if input {
			v.p.Add(rp+".mode", "%q is for output rules: an input rule must be a CEL rule", ModeJudge)
		}
		if r.Translation != nil {
			v.p.Add(rp+".translation", "is only for CEL rules")
		}
	default:
		v.p.Add(rp+".mode", "must be %q or %q", ModeCEL, ModeJudge)
	}
	if t := r.Translation; t != nil {
		if strings.TrimSpace(t.Expression) == "" {
			v.p.Add(rp+".translation.expression", "is required")
		}
		bud.CheckText(&v.p, rp+".translation.rule", t.Rule, bud.MaxDescriptionLen)
		bud.CheckText(&v.p, rp+".translation.deployment", t.Deployment, bud.MaxDescriptionLen)
	}
}

func (v *validator) options(path string, vr Variable) {
	if vr.Type != TypeEnum {
		if len(vr.Options) > 0 {
			v.p.Add(path+".options", "is only for enum variables")
		}
		return
	}
	if len(vr.Options) == 0 {
		v.p.Add(path+".options", "an enum needs at least one option")
		return
	}
	if len(vr.Options) > MaxOptions {
		v.p.Add(path+".options", "must have at most %d options", MaxOptions)
	}
	seen := map[string]int{}
	for i, o := range vr.Options {
		op := fmt.Sprintf("%s.options[%d]", path, i)
		if o == "" {
			v.p.Add(op, "must not be empty")
			continue
		}
		if j, dup := seen[o]; dup {
			v.p.Add(op, "duplicates options[%d]", j)
			continue
		}
		seen[o] = i
	}
}

// defaultValue checks a default against the variable it belongs to, as an
// input value would be checked.
func (v *validator) defaultValue(path string, vr Variable) {
	dp := path + ".default"
	val, err := jsonschema.UnmarshalJSON(bytes.NewReader(vr.Default))
	if err != nil {
		v.p.Add(dp, "must be valid JSON")
		return
	}
	sch, err := compileSchema(variableSchema(vr))
	if err != nil {
		v.p.Add(path, "schema error: %s", schemaErrorText(err))
		return
	}
	val = normalizeValue(vr, val)
	probs := map[string]string{}
	if err := sch.Validate(val); err != nil {
		probs = fieldProblems(err, val, "", "is not a field of this variable")
	}
	valueDigitProblems(probs, "", vr, val)
	if len(probs) > 0 {
		keys := make([]string, 0, len(probs))
		for k := range probs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			if k == "" {
				parts = append(parts, probs[k])
			} else {
				parts = append(parts, k+": "+probs[k])
			}
		}
		v.p.Add(dp, "%s", strings.Join(parts, "; "))
	}
}

// Formats is every string format a variable may require.
var Formats = []string{"email", "uri", "url", "date", "date-time", "time", "uuid", "hostname", "ipv4", "ipv6", "ip"}

// knownFormat reports whether a string variable may require format f.
func knownFormat(f string) bool { return slices.Contains(Formats, f) }

func (v *validator) basic(path, typ string, b Basic) {
	isString := typ == TypeString
	isNumber := typ == TypeInteger || typ == TypeNumber
	isArray := typ == TypeArray
	only := func(field string, set, ok bool, kinds string) bool {
		if set && !ok {
			v.p.Add(path+"."+field, "applies only to %s", kinds)
			return false
		}
		return set
	}
	nonNegative := func(field string, n *int) {
		if n != nil && *n < 0 {
			v.p.Add(path+"."+field, "must be >= 0")
		}
	}
	if only("min_length", b.MinLength != nil, isString, "strings") {
		nonNegative("min_length", b.MinLength)
	}
	if only("max_length", b.MaxLength != nil, isString, "strings") {
		nonNegative("max_length", b.MaxLength)
	}
	if only("pattern", b.Pattern != "", isString, "strings") {
		if msg := patternProblem(b.Pattern); msg != "" {
			v.p.Add(path+".pattern", "%s", msg)
		}
	}
	if only("format", b.Format != "", isString, "strings") {
		if !knownFormat(b.Format) {
			quoted := make([]string, len(Formats))
			for i, f := range Formats {
				quoted[i] = strconv.Quote(f)
			}
			v.p.Add(path+".format", "must be one of %s", strings.Join(quoted, ", "))
		}
	}
	only("strip_whitespace", b.StripWhitespace, isString, "strings")
	only("to_lower", b.ToLower, isString, "strings")
	if only("to_upper", b.ToUpper, isString, "strings") && b.ToLower {
		v.p.Add(path+".to_upper", "cannot be set with to_lower")
	}
	only("unique_items", b.UniqueItems, isArray, "arrays")
	if only("max_digits", b.MaxDigits != nil, isNumber, "integers and numbers") && *b.MaxDigits < 1 {
		v.p.Add(path+".max_digits", "must be >= 1")
	}
	if only("decimal_places", b.DecimalPlaces != nil, typ == TypeNumber, "numbers") {
		nonNegative("decimal_places", b.DecimalPlaces)
		if b.MaxDigits != nil && *b.DecimalPlaces > *b.MaxDigits {
			v.p.Add(path+".decimal_places", "must not exceed max_digits (%d)", *b.MaxDigits)
		}
	}
	if len(b.Enum) > 0 {
		v.basicEnum(path, typ, b.Enum)
	}
	only("gt", b.Gt != nil, isNumber, "integers and numbers")
	only("ge", b.Ge != nil, isNumber, "integers and numbers")
	only("lt", b.Lt != nil, isNumber, "integers and numbers")
	only("le", b.Le != nil, isNumber, "integers and numbers")
	if only("multiple_of", b.MultipleOf != nil, isNumber, "integers and numbers") && *b.MultipleOf <= 0 {
		v.p.Add(path+".multiple_of", "must be > 0")
	}
	if only("min_items", b.MinItems != nil, isArray, "arrays") {
		nonNegative("min_items", b.MinItems)
	}
	if only("max_items", b.MaxItems != nil, isArray, "arrays") {
		nonNegative("max_items", b.MaxItems)
	}

	// Bounds no value can meet. Each is reported on the lower bound.
	if isString && b.MinLength != nil && b.MaxLength != nil && *b.MinLength > *b.MaxLength && *b.MaxLength >= 0 {
		v.p.Add(path+".min_length", "must not exceed max_length (%d)", *b.MaxLength)
	}
	if isArray && b.MinItems != nil && b.MaxItems != nil && *b.MinItems > *b.MaxItems && *b.MaxItems >= 0 {
		v.p.Add(path+".min_items", "must not exceed max_items (%d)", *b.MaxItems)
	}
	if isNumber {
		bound := func(lowName string, low *float64, highName string, high *float64, strict bool) {
			if low == nil || high == nil {
				return
			}
			if *low > *high || (strict && *low == *high) {
				if strict {
					v.p.Add(path+"."+lowName, "must be less than %s (%s)", highName, num(*high))
				} else {
					v.p.Add(path+"."+lowName, "must not exceed %s (%s)", highName, num(*high))
				}
			}
		}
		bound("ge", b.Ge, "le", b.Le, false)
		bound("ge", b.Ge, "lt", b.Lt, true)
		bound("gt", b.Gt, "le", b.Le, true)
		bound("gt", b.Gt, "lt", b.Lt, true)
	}
}

// basicEnum checks the values of basic.enum: each of the variable's type,
// none repeated.
func (v *validator) basicEnum(path, typ string, values []json.RawMessage) {
	switch typ {
	case TypeInteger, TypeNumber, TypeBoolean:
	case TypeString:
		v.p.Add(path+".enum", `for a string, use "type": "enum" with options`)
		return
	default:
		v.p.Add(path+".enum", "applies only to integers, numbers and booleans")
		return
	}
	if len(values) > MaxOptions {
		v.p.Add(path+".enum", "must have at most %d values", MaxOptions)
	}
	seen := map[string]int{}
	for i, raw := range values {
		ep := fmt.Sprintf("%s.enum[%d]", path, i)
		val, err := normalize(raw)
		ok := err == nil
		switch val.(type) {
		case int64:
			ok = ok && typ != TypeBoolean
		case float64:
			ok = ok && typ == TypeNumber
		case bool:
			ok = ok && typ == TypeBoolean
		default:
			ok = false
		}
		if !ok {
			v.p.Add(ep, "must be %s", article(typ))
			continue
		}
		key := fmt.Sprint(val)
		if j, dup := seen[key]; dup {
			v.p.Add(ep, "duplicates enum[%d]", j)
			continue
		}
		seen[key] = i
	}
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// patternProblem says what is wrong with a pattern, or "". A pattern is
// checked by Go here and by browsers in the run form, so it must mean the
// same to both: Go's syntax without what ECMAScript lacks.
func patternProblem(p string) string {
	if len(p) > MaxPatternLen {
		return fmt.Sprintf("must be at most %d characters", MaxPatternLen)
	}
	if _, err := regexp.Compile(p); err != nil {
		return "is not a valid regular expression: " + strings.TrimPrefix(err.Error(), "error parsing regexp: ")
	}
	if bad := notECMA(p); bad != "" {
		return "uses " + bad + ", which JavaScript regular expressions do not support"
	}
	return ""
}

func notECMA(p string) string {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			if i+1 >= len(p) {
				return ""
			}
			switch c := p[i+1]; c {
			case 'A', 'z', 'Q', 'E', 'C':
				return `\` + string(c)
			case 'p', 'P':
				if i+2 >= len(p) || p[i+2] != '{' {
					return `\` + string(c) + " without braces"
				}
			}
			i++
		case '(':
			rest := p[i+1:]
			if strings.HasPrefix(rest, "?P<") {
				return "(?P<name>…) groups (write (?<name>…))"
			}
			if strings.HasPrefix(rest, "?") && !strings.HasPrefix(rest, "?:") && !strings.HasPrefix(rest, "?<") {
				return "inline flags such as (?i)"
			}
		case '[':
			if strings.HasPrefix(p[i:], "[[:") {
				return "POSIX classes such as [[:alpha:]]"
			}
		}
	}
	return ""
}

// templates checks every template: it must parse, and read only the input.
func (v *validator) templates(d *Document) {
	if d.SystemPrompt == "" && len(d.Messages) == 0 {
		v.p.Add("messages", "a prompt needs a system prompt or at least one message")
	}
	if len(d.Messages) > MaxMessages {
		v.p.Add("messages", "must have at most %d messages", MaxMessages)
	}
	// With an input of unknown type there is no telling which names are
	// defined; the type's own problem is reported.
	var known map[string]bool
	switch d.Input.Type {
	case ShapeStructured:
		known = map[string]bool{}
		for _, vr := range d.Input.Variables {
			known[vr.Name] = true
		}
	case ShapeText:
		known = map[string]bool{"input": true}
	}
	if d.SystemPrompt != "" {
		v.template("system_prompt", d.SystemPrompt, known, d.Input.Structured())
	}
	for i, m := range d.Messages {
		mp := fmt.Sprintf("messages[%d]", i)
		switch m.Role {
		case RoleUser, RoleAssistant, RoleDeveloper, RoleTool:
		case "":
			v.p.Add(mp+".role", "is required")
		default:
			v.p.Add(mp+".role", "must be one of %q, %q, %q, %q", RoleUser, RoleAssistant, RoleDeveloper, RoleTool)
		}
		v.template(mp+".content", m.Content, known, d.Input.Structured())
	}
	v.toolMessages(d.Messages)
}

// toolMessages checks the function calls of assistant messages and the tool
// messages that answer them, by OpenAI's rules for a conversation: each
// call has a unique id, a function name and JSON object arguments; a tool
// message names a call of the assistant message before it (only other
// answers to that message in between), and every call is answered before
// the next message of another kind.
func (v *validator) toolMessages(msgs []Message) {
	ids := map[string]string{} // call id → where it was first used
	var (
		open   map[string]int // unanswered calls of the last assistant message: id → index
		owner  int            // that message's index
		answer = map[string]int{}
	)
	unanswered := func(before string) {
		for _, id := range sortedByValue(open) {
			msg := "has no tool message answering it"
			if before != "" {
				msg += " before " + before
			}
			v.p.Add(fmt.Sprintf("messages[%d].tool_calls[%d].id", owner, open[id]), "%s", msg)
		}
		open = nil
	}
	for i, m := range msgs {
		mp := fmt.Sprintf("messages[%d]", i)
		if len(m.ToolCalls) > 0 && m.Role != RoleAssistant {
			v.p.Add(mp+".tool_calls", "is only for assistant messages")
		}
		if m.ToolCallID != "" && m.Role != RoleTool {
			v.p.Add(mp+".tool_call_id", "is only for tool messages")
		}
		if m.Role == RoleTool {
			switch _, wasOpen := open[m.ToolCallID]; {
			case m.ToolCallID == "":
				v.p.Add(mp+".tool_call_id", "is required: the id of the call this message answers")
			case wasOpen:
				delete(open, m.ToolCallID)
				answer[m.ToolCallID] = i
			case open == nil && answer[m.ToolCallID] == 0:
				v.p.Add(mp+".tool_call_id", "%q must be the id of a call in the tool_calls of the assistant message before it", m.ToolCallID)
			default:
				if j, done := answer[m.ToolCallID]; done {
					v.p.Add(mp+".tool_call_id", "%q is already answered by messages[%d]", m.ToolCallID, j)
				} else {
					v.p.Add(mp+".tool_call_id", "%q is not a call of messages[%d].tool_calls", m.ToolCallID, owner)
				}
			}
			continue
		}
		if open != nil {
			unanswered(mp)
		}
		answer = map[string]int{}
		if m.Role != RoleAssistant || len(m.ToolCalls) == 0 {
			continue
		}
		open, owner = map[string]int{}, i
		for j, c := range m.ToolCalls {
			cp := fmt.Sprintf("%s.tool_calls[%d]", mp, j)
			switch c.Type {
			case "function":
			case "":
				v.p.Add(cp+".type", `is required: "function"`)
			default:
				v.p.Add(cp+".type", `must be "function"`)
			}
			switch {
			case c.Function.Name == "":
				v.p.Add(cp+".function.name", "is required")
			case !functionName.MatchString(c.Function.Name):
				v.p.Add(cp+".function.name", "must be 1 to 64 letters, digits, underscores or dashes")
			}
			var args any
			if err := json.Unmarshal([]byte(c.Function.Arguments), &args); err != nil {
				v.p.Add(cp+".function.arguments", "must be a JSON object, as text")
			} else if _, isObj := args.(map[string]any); !isObj {
				v.p.Add(cp+".function.arguments", "must be a JSON object, as text")
			}
			switch prev, dup := ids[c.ID]; {
			case c.ID == "":
				v.p.Add(cp+".id", "is required")
			case dup:
				v.p.Add(cp+".id", "duplicates %s", prev)
			default:
				ids[c.ID] = cp + ".id"
				open[c.ID] = j
			}
		}
	}
	if len(open) > 0 {
		unanswered("")
	}
}

// sortedByValue returns m's keys ordered by their values.
func sortedByValue(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return m[keys[a]] < m[keys[b]] })
	return keys
}

func (v *validator) template(field, source string, known map[string]bool, structured bool) {
	t, err := v.sb.parse(field, source)
	if err != nil {
		v.p.Add(field, "%s", err)
		return
	}
	if known == nil {
		return
	}
	var unknown []string
	for _, n := range t.reads {
		if !known[n] {
			unknown = append(unknown, strconv.Quote(n))
		}
	}
	if len(unknown) == 0 {
		return
	}
	sort.Strings(unknown)
	msg := "uses undefined variable " + unknown[0]
	if len(unknown) > 1 {
		msg = "uses undefined variables " + strings.Join(unknown, ", ")
	}
	if !structured {
		msg += " (a text-input prompt has only {{ input }})"
	}
	v.p.Add(field, "%s", msg)
}

var functionName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

func (v *validator) tools(tools []Tool, c Checker) {
	if len(tools) > MaxTools {
		v.p.Add("tools", "must have at most %d tools", MaxTools)
	}
	names := map[string]int{}
	for i, t := range tools {
		tp := fmt.Sprintf("tools[%d]", i)
		switch t.Type {
		case ToolConnection:
			v.connectionTool(tp, t, c)
		case ToolFunction:
			v.functionTool(tp, t)
			if t.Name == "" {
				continue
			}
			if j, dup := names[t.Name]; dup {
				v.p.Add(tp+".name", "duplicates tools[%d].name %q", j, t.Name)
			} else {
				names[t.Name] = i
			}
		case "":
			v.p.Add(tp+".type", "is required")
		default:
			v.p.Add(tp+".type", "must be %q or %q", ToolConnection, ToolFunction)
		}
	}
}

func (v *validator) connectionTool(tp string, t Tool, c Checker) {
	for field, set := range map[string]bool{"name": t.Name != "", "description": t.Description != "", "parameters": len(t.Parameters) > 0} {
		if set {
			v.p.Add(tp+"."+field, "is only for function tools")
		}
	}
	switch _, err := uuid.Parse(t.ConnectionID); {
	case t.ConnectionID == "":
		v.p.Add(tp+".connection_id", "is required")
	case err != nil:
		v.p.Add(tp+".connection_id", "must be a UUID")
	case c.ConnectionExists != nil && !c.ConnectionExists(t.ConnectionID):
		v.p.Add(tp+".connection_id", "no connection with this id in this project")
	}
	allowed := map[string]bool{}
	for j, name := range t.AllowedTools {
		ap := fmt.Sprintf("%s.allowed_tools[%d]", tp, j)
		switch {
		case name == "":
			v.p.Add(ap, "must not be empty")
		case allowed[name]:
			v.p.Add(ap, "duplicates %q", name)
		}
		allowed[name] = true
	}
	rp := tp + ".require_approval"
	switch t.RequireApproval.Policy {
	case ApprovalNever, ApprovalAlways:
	case ApprovalListed:
		if len(t.RequireApproval.Tools) == 0 {
			v.p.Add(rp, "must list at least one tool, or be %q", ApprovalNever)
		}
		for j, name := range t.RequireApproval.Tools {
			jp := fmt.Sprintf("%s[%d]", rp, j)
			switch {
			case name == "":
				v.p.Add(jp, "must not be empty")
			case len(t.AllowedTools) > 0 && !allowed[name]:
				v.p.Add(jp, "%q is not in allowed_tools", name)
			}
		}
	case "":
		v.p.Add(rp, "is required")
	default:
		v.p.Add(rp, "%s", errApprovalShape)
	}
}

func (v *validator) functionTool(tp string, t Tool) {
	for field, set := range map[string]bool{
		"connection_id": t.ConnectionID != "", "allowed_tools": len(t.AllowedTools) > 0,
		"require_approval": t.RequireApproval.Policy != "",
	} {
		if set {
			v.p.Add(tp+"."+field, "is only for connection tools")
		}
	}
	switch {
	case t.Name == "":
		v.p.Add(tp+".name", "is required")
	case !functionName.MatchString(t.Name):
		v.p.Add(tp+".name", "must be 1 to 64 letters, digits, underscores or dashes")
	}
	bud.CheckText(&v.p, tp+".description", t.Description, bud.MaxDescriptionLen)
	if len(t.Parameters) == 0 {
		return
	}
	pp := tp + ".parameters"
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(t.Parameters))
	obj, isObj := doc.(map[string]any)
	switch {
	case err != nil || !isObj:
		v.p.Add(pp, "must be a JSON Schema object")
		return
	case obj["type"] != "object":
		v.p.Add(pp, `must describe an object ("type": "object")`)
		return
	}
	if _, err := compileSchemaJSON(t.Parameters); err != nil {
		v.p.Add(pp, "is not a valid JSON Schema: %s", schemaErrorText(err))
	}
}
