package activities

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"

	"github.com/budhq/bud"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/run"
)

// PrepareRunResult is a run ready for its first model call, and what the
// workflow needs to know of the document to drive the rest.
type PrepareRunResult struct {
	// Deployment is the model deployment the document names.
	Deployment string `json:"deployment"`
	// Messages are the instructions, the rendered messages and the input
	// items, in that order.
	Messages []chat.Message `json:"messages"`
	// ModelParams are the document's model parameters (a JSON object).
	ModelParams json.RawMessage `json:"model_params,omitempty"`
	// ResponseFormat is the json_schema response format of a structured
	// output, nil for a text output.
	ResponseFormat json.RawMessage `json:"response_format,omitempty"`
	// StrictReason, set when ResponseFormat is not strict, says why: the
	// output schema is beyond what OpenAI's strict mode can express.
	StrictReason string `json:"strict_reason,omitempty"`
	// Tools are the document's function tools in OpenAI's format.
	Tools []chat.Tool `json:"tools,omitempty"`
	// ConnectionTools are the document's active connection tools, which
	// ResolveTools turns into tools to offer.
	ConnectionTools []prompt.Tool `json:"connection_tools,omitempty"`
	// Variables are the validated input with defaults applied ({"input":
	// text} for a text prompt).
	Variables map[string]any `json:"variables"`
	// StructuredOutput says that replies must pass CheckOutput.
	StructuredOutput   bool `json:"structured_output"`
	AllowMultipleCalls bool `json:"allow_multiple_calls"`
	LLMRetryLimit      int  `json:"llm_retry_limit"`
	// RuleDeployment is the model deployment that judges rules in judge
	// mode.
	RuleDeployment string `json:"rule_deployment,omitempty"`
}

// OutputSchemaName is the name the output schema is sent under in
// response_format.
const OutputSchemaName = "output"

// PrepareRun checks that the run's project, prompt version and prompt
// deployment belong together, then parses and compiles the document,
// validates the input and renders the messages. It is the run's first step,
// so no credential of a project is used for a run that only claims it.
// It is cheap (one indexed read), so workflows run it as a local activity.
// Failures are non-retryable, typed run.RunRefused, run.InvalidPrompt,
// run.InvalidInput (run.Failure.Param set) or run.RenderFailed; a database
// error is retryable. Without a Pool the ownership check is skipped: such
// Activities cannot call a model or use a connection either.
func (a *Activities) PrepareRun(ctx context.Context, in run.Input) (PrepareRunResult, error) {
	if err := a.checkOwnership(ctx, in); err != nil {
		return PrepareRunResult{}, err
	}
	doc, c, err := a.documents.compile(in.Document)
	if err != nil {
		return PrepareRunResult{}, invalidPrompt(err)
	}
	vars, err := c.ValidateInput(in.Text, in.Variables)
	if err != nil {
		return PrepareRunResult{}, invalidInput(err)
	}
	rendered, err := c.Render(vars)
	if err != nil {
		var re *prompt.RenderError
		msg := "a template of the prompt failed to render"
		if errors.As(err, &re) {
			msg = re.Error()
		}
		return PrepareRunResult{}, temporal.NewNonRetryableApplicationError("prepare run: "+err.Error(), run.RenderFailed, nil, run.Failure{Message: msg})
	}
	items, err := inputItemMessages(in.InputItems)
	if err != nil {
		return PrepareRunResult{}, invalidInput(err)
	}

	msgs := make([]chat.Message, 0, 1+len(rendered)+len(items))
	if in.Instructions != "" {
		msgs = append(msgs, chat.Message{Role: prompt.RoleSystem, Content: in.Instructions})
	}
	for _, m := range rendered {
		cm := chat.Message{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
		for _, tc := range m.ToolCalls {
			cm.ToolCalls = append(cm.ToolCalls, chat.ToolCall{ID: tc.ID, Type: tc.Type,
				Function: chat.ToolCallFunction{Name: tc.Function.Name, Arguments: tc.Function.Arguments}})
		}
		msgs = append(msgs, cm)
	}
	msgs = append(msgs, items...)

	out := PrepareRunResult{
		Deployment:         doc.Deployment,
		Messages:           msgs,
		ModelParams:        doc.ModelParams,
		Variables:          vars,
		StructuredOutput:   doc.Output.Structured(),
		AllowMultipleCalls: doc.AllowMultipleCalls,
		LLMRetryLimit:      doc.LLMRetryLimit,
		RuleDeployment:     doc.RuleDeployment(),
	}
	if f := c.OutputFormat(); f.Schema != nil {
		rf, err := json.Marshal(map[string]any{
			"type": "json_schema",
			"json_schema": map[string]any{
				"name":   OutputSchemaName,
				"strict": f.Strict,
				"schema": f.Schema,
			},
		})
		if err != nil {
			return PrepareRunResult{}, fmt.Errorf("prepare run: encode response format: %w", err)
		}
		out.ResponseFormat, out.StrictReason = rf, f.NotStrictReason
	}
	for _, t := range doc.Tools {
		if t.Type == prompt.ToolConnection {
			if t.Active {
				out.ConnectionTools = append(out.ConnectionTools, t)
			}
			continue
		}
		out.Tools = append(out.Tools, chat.Tool{Type: "function", Function: chat.Function{
			Name: t.Name, Description: t.Description, Parameters: t.Parameters,
		}})
	}
	return out, nil
}

// CheckOutputInput is a reply to validate against the document's output.
type CheckOutputInput struct {
	Document json.RawMessage `json:"document"`
	Content  string          `json:"content"`
	// Variables are the run's validated input, which output rules read as
	// input.
	Variables map[string]any `json:"variables,omitempty"`
}

// CheckOutputResult says whether a reply is valid: its parsed value, or the
// problems to quote back to the model in a repair.
type CheckOutputResult struct {
	Valid bool `json:"valid"`
	// Parsed is the validated output as JSON.
	Parsed json.RawMessage `json:"parsed,omitempty"`
	// Message sums the problems up in one line.
	Message string `json:"message,omitempty"`
	// Problems are "field: problem" lines, sorted by field.
	Problems []string `json:"problems,omitempty"`
	// Judge are the values of a valid output that rules in judge mode
	// still have to pass, each by a model call.
	Judge []JudgeCheck `json:"judge,omitempty"`
}

// JudgeCheck is one value of an output a model judges by a rule.
type JudgeCheck struct {
	Rule  string          `json:"rule"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

// CheckOutput validates a reply against the document's output: for a
// structured output, JSON that matches the output schema. An invalid reply
// is a result, not an error; errors mean the document itself is unusable
// (non-retryable run.InvalidPrompt).
func (a *Activities) CheckOutput(ctx context.Context, in CheckOutputInput) (CheckOutputResult, error) {
	_, c, err := a.documents.compile(in.Document)
	if err != nil {
		return CheckOutputResult{}, invalidPrompt(err)
	}
	v, err := c.ValidateOutputFor(in.Content, in.Variables)
	if err != nil {
		var e *bud.Error
		if !errors.As(err, &e) {
			return CheckOutputResult{}, fmt.Errorf("check output: %w", err)
		}
		res := CheckOutputResult{Message: e.Message}
		for _, f := range sortedKeys(e.Fields) {
			res.Problems = append(res.Problems, f+": "+e.Fields[f])
		}
		return res, nil
	}
	parsed, err := json.Marshal(v)
	if err != nil {
		return CheckOutputResult{}, fmt.Errorf("check output: encode: %w", err)
	}
	res := CheckOutputResult{Valid: true, Parsed: parsed}
	for _, j := range c.JudgeRules() {
		for _, jv := range j.Values(v) {
			raw, err := json.Marshal(jv.Value)
			if err != nil {
				return CheckOutputResult{}, fmt.Errorf("check output: encode: %w", err)
			}
			res.Judge = append(res.Judge, JudgeCheck{Rule: j.Rule, Path: jv.Path, Value: raw})
		}
	}
	return res, nil
}

// checkOwnership refuses a run whose project does not exist, whose prompt
// version is not the project's, or whose prompt deployment is not the
// project's or serves another prompt: whoever can start a workflow could
// otherwise claim any project and spend its provider keys and connections.
// The caller learns only that the run was refused, not which part is
// absent, as an API answers 404 for both "absent" and "not yours".
func (a *Activities) checkOwnership(ctx context.Context, in run.Input) error {
	if a.Pool == nil {
		return nil
	}
	row, err := dbsqlc.New(a.Pool).CheckRunOwnership(ctx, dbsqlc.CheckRunOwnershipParams{
		ProjectID: in.ProjectID, PromptID: in.PromptID, PromptVersion: in.PromptVersion, Deployment: in.Deployment,
	})
	if err != nil {
		return fmt.Errorf("prepare run: check ownership: %w", err)
	}
	var why string
	switch {
	case !row.ProjectExists:
		why = "project does not exist"
	case in.PromptID != uuid.Nil && !row.PromptVersionOwned:
		why = "prompt version is not the project's"
	case in.Deployment != "" && !row.DeploymentServesPrompt:
		why = "deployment is not the project's prompt deployment of this prompt"
	default:
		return nil
	}
	return temporal.NewNonRetryableApplicationError("prepare run: refused: "+why, run.RunRefused, nil,
		run.Failure{Message: "the run's project, prompt or deployment was not found"})
}

func invalidPrompt(err error) error {
	msg := "the prompt's document is invalid"
	var e *bud.Error
	if errors.As(err, &e) && e.Code != bud.EINTERNAL {
		msg = e.Message
	}
	return temporal.NewNonRetryableApplicationError("prepare run: "+err.Error(), run.InvalidPrompt, nil, run.Failure{Message: msg})
}

// invalidInput reports a *bud.Error of the input; Param is its first field
// in order, the message names them all.
func invalidInput(err error) error {
	f := run.Failure{Message: "invalid input"}
	var e *bud.Error
	if errors.As(err, &e) {
		f.Message = e.Message
		if keys := sortedKeys(e.Fields); len(keys) > 0 {
			f.Param = keys[0]
		}
	}
	return temporal.NewNonRetryableApplicationError(f.Message, run.InvalidInput, nil, f)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// InputItem is an OpenAI Responses input item, as far as runs use them:
// messages, function calls and their outputs, and (in a continue of a
// paused run) approval responses.
type InputItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
	// ApprovalRequestID, Approve and Reason are an mcp_approval_response's.
	ApprovalRequestID string `json:"approval_request_id"`
	Approve           *bool  `json:"approve"`
	Reason            string `json:"reason"`
}

// inputItemMessages converts Responses input items into chat messages:
// messages keep their role and text; a function_call joins the assistant
// message before it (or starts one) as a tool call; a function_call_output
// becomes a "tool" message. Problems are *bud.Error with fields named as in
// the request ("input[2].content[0].type").
func inputItemMessages(raw json.RawMessage) ([]chat.Message, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, problem("input", "must be a string or a list of input items")
		}
		return []chat.Message{{Role: prompt.RoleUser, Content: s}}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, problem("input", "must be a string or a list of input items")
	}
	var msgs []chat.Message
	for i, rawItem := range items {
		path := fmt.Sprintf("input[%d]", i)
		var it InputItem
		if err := json.Unmarshal(rawItem, &it); err != nil {
			return nil, problem(path, "must be an input item object")
		}
		switch it.Type {
		case "", "message":
			m, err := MessageItem(path, it)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, m)
		case "function_call":
			if it.CallID == "" {
				return nil, problem(path+".call_id", "is required")
			}
			if it.Name == "" {
				return nil, problem(path+".name", "is required")
			}
			call := chat.ToolCall{ID: it.CallID, Type: "function", Function: chat.ToolCallFunction{Name: it.Name, Arguments: it.Arguments}}
			// Parallel calls travel in one assistant message in chat.
			if n := len(msgs); n > 0 && msgs[n-1].Role == prompt.RoleAssistant {
				msgs[n-1].ToolCalls = append(msgs[n-1].ToolCalls, call)
			} else {
				msgs = append(msgs, chat.Message{Role: prompt.RoleAssistant, ToolCalls: []chat.ToolCall{call}})
			}
		case "function_call_output":
			if it.CallID == "" {
				return nil, problem(path+".call_id", "is required")
			}
			text, err := ContentText(path+".output", it.Output)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, chat.Message{Role: prompt.RoleTool, ToolCallID: it.CallID, Content: text})
		default:
			return nil, problem(path+".type", fmt.Sprintf("%q items are not supported; use message, function_call or function_call_output", it.Type))
		}
	}
	return msgs, nil
}

// MessageItem converts a message item, found at path in the request
// ("input[2]"), into a chat message.
func MessageItem(path string, it InputItem) (chat.Message, error) {
	switch it.Role {
	case prompt.RoleUser, prompt.RoleAssistant, prompt.RoleSystem, prompt.RoleDeveloper:
	case "":
		return chat.Message{}, problem(path+".role", "is required")
	default:
		return chat.Message{}, problem(path+".role", "must be one of user, assistant, system, developer")
	}
	text, err := ContentText(path+".content", it.Content)
	if err != nil {
		return chat.Message{}, err
	}
	return chat.Message{Role: it.Role, Content: text}, nil
}

// ContentText reads an item's content or output at path: a string, or a
// list of text parts joined by newlines.
func ContentText(path string, raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", problem(path, "is required")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", problem(path, "must be a string or a list of text parts")
		}
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", problem(path, "must be a string or a list of text parts")
	}
	texts := make([]string, 0, len(parts))
	for j, p := range parts {
		pp := fmt.Sprintf("%s[%d]", path, j)
		switch p.Type {
		case "input_text", "output_text", "text":
		default:
			return "", problem(pp+".type", fmt.Sprintf("%q parts are not supported; use input_text", p.Type))
		}
		if p.Text == nil {
			return "", problem(pp+".text", "is required")
		}
		texts = append(texts, *p.Text)
	}
	return strings.Join(texts, "\n"), nil
}

func problem(field, msg string) error {
	return &bud.Error{Code: bud.EINVALID, Message: "invalid input: " + field + ": " + msg, Fields: map[string]string{field: msg}}
}

// documentCache keeps compiled documents by content, since every model
// call of a structured run checks its reply against the same document.
// The zero value is ready to use.
type documentCache struct {
	mu   sync.Mutex
	docs map[[sha256.Size]byte]compiledDocument
}

type compiledDocument struct {
	doc *prompt.Document
	c   *prompt.Compiled
}

// maxCachedDocuments bounds the cache; when full it starts over, which
// costs a compile per document, not a failure.
const maxCachedDocuments = 256

func (dc *documentCache) compile(raw json.RawMessage) (*prompt.Document, *prompt.Compiled, error) {
	key := sha256.Sum256(raw)
	dc.mu.Lock()
	cd, ok := dc.docs[key]
	dc.mu.Unlock()
	if ok {
		return cd.doc, cd.c, nil
	}
	doc, err := prompt.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("parse document: %w", err)
	}
	c, err := prompt.Compile(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("compile document: %w", err)
	}
	dc.mu.Lock()
	if dc.docs == nil || len(dc.docs) >= maxCachedDocuments {
		dc.docs = map[[sha256.Size]byte]compiledDocument{}
	}
	dc.docs[key] = compiledDocument{doc: doc, c: c}
	dc.mu.Unlock()
	return doc, c, nil
}
