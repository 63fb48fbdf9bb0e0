// Package prompt is Bud's prompt document: one immutable JSON document per
// prompt version. It holds the document's Go types, strict parsing, validation
// that reports every problem at once by JSON field path, the document's
// published JSON Schema, the steps of the sequential run form, and Compile,
// which turns a document into what a run needs: input validation, message
// rendering in a template sandbox, and output validation.
package prompt

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/budhq/bud"
)

// Input and output shapes.
const (
	ShapeText       = "text"       // one string: {{ input }} for input, the reply as is for output
	ShapeStructured = "structured" // named, typed variables
)

// Variable types.
const (
	TypeString  = "string"
	TypeInteger = "integer"
	TypeNumber  = "number"
	TypeBoolean = "boolean"
	TypeEnum    = "enum"
	TypeArray   = "array"
	TypeObject  = "object"
)

// Message roles a document may use; the system prompt has its own field.
const (
	RoleSystem    = "system" // only in rendered messages, from system_prompt
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleDeveloper = "developer"
	RoleTool      = "tool"
)

// Tool types.
const (
	ToolConnection = "connection" // a stored connection (MCP server, Slack…) the worker calls
	ToolFunction   = "function"   // a function whose calls are returned to the caller
)

// Approval policies of a connection tool.
const (
	ApprovalNever  = "never"
	ApprovalAlways = "always"
	ApprovalListed = "listed" // only the tools in Approval.Tools need approval
)

// Default values Parse fills in for absent fields.
const (
	DefaultLLMRetryLimit = 3
	MaxLLMRetryLimit     = 10
)

// Document is one version of a prompt. Parse fills in defaults for absent
// fields; Validate says whether it can be saved.
type Document struct {
	// Deployment names a model deployment of the prompt's project.
	Deployment string `json:"deployment"`
	// ModelParams are OpenAI chat parameters (temperature, max_tokens, …);
	// unknown ones are kept and passed through.
	ModelParams json.RawMessage `json:"model_params,omitempty"`
	// SystemPrompt is a Jinja template; when it renders it becomes the first,
	// "system", message. It may be empty.
	SystemPrompt string `json:"system_prompt"`
	// Messages are Jinja templates rendered in order after the system prompt.
	Messages []Message `json:"messages,omitempty"`
	Input    Shape     `json:"input"`
	Output   Shape     `json:"output"`
	Tools    []Tool    `json:"tools,omitempty"`
	// AllowMultipleCalls lets a run loop through tool calls and repairs;
	// without it a run makes one model call.
	AllowMultipleCalls bool `json:"allow_multiple_calls"`
	// LLMRetryLimit bounds the repair calls made when a reply fails output
	// validation (0..10).
	LLMRetryLimit int      `json:"llm_retry_limit"`
	Settings      Settings `json:"settings"`
}

// Settings are a document's serving settings, and the model deployment that
// translates its custom rules.
type Settings struct {
	bud.Settings
	// ValidationDeployment names the model deployment of the project that
	// translates custom rules and judges output in judge mode; empty means
	// the document's own Deployment.
	ValidationDeployment string `json:"validation_deployment,omitempty"`
}

// RuleDeployment is the model deployment that translates and judges the
// document's custom rules.
func (d *Document) RuleDeployment() string {
	if d.Settings.ValidationDeployment != "" {
		return d.Settings.ValidationDeployment
	}
	return d.Deployment
}

// Message is a role and its content. In a Document the content is a Jinja
// template; from Compiled.Render it is the rendered text. An assistant
// message may carry the function calls it made, and each is answered by a
// tool message right after it (or after the other answers) that names the
// call, as OpenAI-compatible upstreams require.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// ToolCalls, on an assistant message, are its function calls; their
	// arguments are sent as written, not rendered.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID, on a tool message, is the id of the call it answers.
	ToolCallID string `json:"tool_call_id,omitempty"`
}

// ToolCall is a function call of an assistant message, in OpenAI's chat
// format.
type ToolCall struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"` // "function"
	Function ToolCallFunction `json:"function"`
}

// ToolCallFunction names the function called and holds its arguments, a
// JSON object as text.
type ToolCallFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Shape says what a prompt takes or returns: text, or structured variables.
type Shape struct {
	Type      string     `json:"type"`
	Variables []Variable `json:"variables,omitempty"`
}

// Structured reports whether the shape has variables rather than text.
func (s Shape) Structured() bool { return s.Type == ShapeStructured }

// Variable is one typed field of a structured input or output. Options belong
// to enums, Items to arrays (an unnamed Variable: the element type) and
// Variables to objects (their fields).
type Variable struct {
	Name        string          `json:"name,omitempty"`
	Type        string          `json:"type"`
	Description string          `json:"description,omitempty"`
	Default     json.RawMessage `json:"default,omitempty"`
	Required    bool            `json:"required,omitempty"`
	Options     []string        `json:"options,omitempty"`
	Items       *Variable       `json:"items,omitempty"`
	Variables   []Variable      `json:"variables,omitempty"`
	Validation  *Validation     `json:"validation,omitempty"`
}

// hasDefault reports whether the variable carries a default (JSON null is none).
func (v Variable) hasDefault() bool {
	return len(v.Default) > 0 && string(v.Default) != "null"
}

// Validation holds a variable's constraints.
type Validation struct {
	Basic *Basic `json:"basic,omitempty"`
	// Custom are plain-language rules, each checked as the CEL expression a
	// model translated it into when the version was saved, or, in judge
	// mode, by a model call on each output.
	Custom []CustomRule `json:"custom,omitempty"`
}

// Basic are pydantic-style constraints; each applies to one kind of variable:
// lengths, pattern, format and the normalisers to strings, bounds,
// multiple_of and digit counts to integers and numbers, item counts and
// unique_items to arrays, enum to integers, numbers and booleans (a string
// takes "type": "enum" and options).
type Basic struct {
	MinLength  *int     `json:"min_length,omitempty"`
	MaxLength  *int     `json:"max_length,omitempty"`
	Pattern    string   `json:"pattern,omitempty"`
	Gt         *float64 `json:"gt,omitempty"`
	Ge         *float64 `json:"ge,omitempty"`
	Lt         *float64 `json:"lt,omitempty"`
	Le         *float64 `json:"le,omitempty"`
	MultipleOf *float64 `json:"multiple_of,omitempty"`
	MinItems   *int     `json:"min_items,omitempty"`
	MaxItems   *int     `json:"max_items,omitempty"`
	Format     string   `json:"format,omitempty"`
	// UniqueItems refuses an array with two equal items.
	UniqueItems bool `json:"unique_items,omitempty"`
	// MaxDigits bounds the digits of a number in all, DecimalPlaces those
	// after the decimal point, as pydantic counts them for a Decimal.
	MaxDigits     *int `json:"max_digits,omitempty"`
	DecimalPlaces *int `json:"decimal_places,omitempty"`
	// StripWhitespace, ToLower and ToUpper rewrite a string value before it
	// is checked, in an input and in an output alike.
	StripWhitespace bool `json:"strip_whitespace,omitempty"`
	ToLower         bool `json:"to_lower,omitempty"`
	ToUpper         bool `json:"to_upper,omitempty"`
	// Enum lists the values an integer, number or boolean may take.
	Enum []json.RawMessage `json:"enum,omitempty"`
}

// Tool is a connection or a function the model may call. ConnectionID,
// AllowedTools, Active and RequireApproval apply to connection tools; Name,
// Description and Parameters to function tools.
type Tool struct {
	Type string `json:"type"`

	ConnectionID string `json:"connection_id,omitempty"`
	// AllowedTools limits which tools of the connection the model sees;
	// empty means all of them.
	AllowedTools []string `json:"allowed_tools,omitempty"`
	// Active tools are offered to the model; Parse makes a connection tool
	// active unless the document says otherwise.
	Active bool `json:"active"`
	// RequireApproval defaults to always, as in the OpenAI Responses API: a
	// tool that reaches outside runs only once someone agrees, unless the
	// author says otherwise.
	RequireApproval Approval `json:"require_approval"`

	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// MarshalJSON writes only the fields of the tool's type, so a stored document
// reads the way it was written.
func (t Tool) MarshalJSON() ([]byte, error) {
	switch t.Type {
	case ToolConnection:
		return json.Marshal(struct {
			Type            string   `json:"type"`
			ConnectionID    string   `json:"connection_id"`
			AllowedTools    []string `json:"allowed_tools,omitempty"`
			Active          bool     `json:"active"`
			RequireApproval Approval `json:"require_approval"`
		}{t.Type, t.ConnectionID, t.AllowedTools, t.Active, t.RequireApproval})
	case ToolFunction:
		return json.Marshal(struct {
			Type        string          `json:"type"`
			Name        string          `json:"name"`
			Description string          `json:"description,omitempty"`
			Parameters  json.RawMessage `json:"parameters,omitempty"`
		}{t.Type, t.Name, t.Description, t.Parameters})
	}
	type plain Tool // without this method, so the call does not recurse
	return json.Marshal(plain(t))
}

// Approval says which calls of a connection tool wait for a person: none,
// all, or those of the listed tools.
type Approval struct {
	Policy string   // ApprovalNever, ApprovalAlways or ApprovalListed
	Tools  []string // with ApprovalListed: the tools whose calls need approval
}

// Requires reports whether a call of the named tool waits for approval.
func (a Approval) Requires(tool string) bool {
	switch a.Policy {
	case ApprovalNever:
		return false
	case ApprovalListed:
		for _, t := range a.Tools {
			if t == tool {
				return true
			}
		}
		return false
	}
	return true // always, and anything unknown: err on the side of asking
}

// MarshalJSON writes "never", "always" or the list of tools.
func (a Approval) MarshalJSON() ([]byte, error) {
	if a.Policy == ApprovalListed {
		tools := a.Tools
		if tools == nil {
			tools = []string{}
		}
		return json.Marshal(tools)
	}
	return json.Marshal(a.Policy)
}

var errApprovalShape = errors.New(`must be "never", "always" or a list of tool names`)

// UnmarshalJSON reads a policy string or a list of tool names. Whether the
// string is a known policy is for Validate to say.
func (a *Approval) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*a = Approval{Policy: s}
		return nil
	}
	var tools []string
	if err := json.Unmarshal(data, &tools); err != nil || tools == nil {
		return errApprovalShape
	}
	*a = Approval{Policy: ApprovalListed, Tools: tools}
	return nil
}

// setDefaults gives a document the values it has when fields are absent.
func (d *Document) setDefaults() {
	d.LLMRetryLimit = DefaultLLMRetryLimit
	d.Settings = Settings{Settings: bud.DefaultSettings()}
	d.Input = Shape{Type: ShapeText}
	d.Output = Shape{Type: ShapeText}
}

// Parse decodes a document strictly: unknown fields and values of the wrong
// JSON type are refused, every one of them at once, as a *bud.Error with code
// EINVALID whose Fields are keyed by JSON path (for example
// "input.variables[1].validation.basic.min_lenght": "unknown field"). Absent
// fields take their defaults: llm_retry_limit 3, settings
// bud.DefaultSettings() (a partial settings object is read over them), input
// and output {"type": "text"}, and for connection tools active true and
// require_approval "always". Parse does not judge meaning; Validate does.
func Parse(raw []byte) (*Document, error) {
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, bud.Errorf(bud.EINVALID, "a prompt must be a JSON object")
	}
	var d Document
	d.setDefaults()
	var p bud.Problems
	decodeInto(&p, "", obj, reflectValue(&d))
	if mp, ok := obj["model_params"]; ok && mp != nil {
		if _, isObj := mp.(map[string]any); !isObj {
			p.Add("model_params", "must be an object") // kept raw, so not typed by decodeInto
		}
	}
	applyToolDefaults(&p, &d, obj)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return &d, nil
}

// applyToolDefaults fills in what a connection tool means when it leaves a
// field out, and refuses connection-only fields on function tools, which
// would otherwise be dropped silently on the next save.
func applyToolDefaults(p *bud.Problems, d *Document, obj map[string]any) {
	raws, _ := obj["tools"].([]any)
	for i := range d.Tools {
		if i >= len(raws) {
			break
		}
		raw, _ := raws[i].(map[string]any)
		t := &d.Tools[i]
		_, hasActive := raw["active"]
		_, hasApproval := raw["require_approval"]
		switch t.Type {
		case ToolConnection:
			if !hasActive || raw["active"] == nil {
				t.Active = true
			}
			if !hasApproval || raw["require_approval"] == nil {
				t.RequireApproval = Approval{Policy: ApprovalAlways}
			}
		case ToolFunction:
			if hasActive {
				p.Add(fmt.Sprintf("tools[%d].active", i), "is only for connection tools")
			}
			if hasApproval {
				p.Add(fmt.Sprintf("tools[%d].require_approval", i), "is only for connection tools")
			}
		}
	}
}
