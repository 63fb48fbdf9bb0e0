package upstreamtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// DefaultContent is the assistant text of the default reply, used whenever
// no scripted reply is waiting and SetDefault was not called.
const DefaultContent = "Hello from the stand-in."

// Reply is what the stand-in answers to one request.
//
// Fields combine: a Reply with both Content and ToolCalls answers with both,
// as OpenAI may. Precedence is RawBody, then Error, then the assistant
// message. Delay, Header and, for streams, ChunkDelay and DropAfter apply to
// every kind. The zero Reply is a successful, empty assistant message.
type Reply struct {
	// Content is the assistant's text. A stream sends it one word per chunk,
	// each word carrying the whitespace before it, so the chunks concatenate
	// back to Content exactly.
	Content string
	// Echo replaces Content with the text of the last user message of the
	// request.
	Echo bool
	// EchoTools replaces Content with the tool results the request hands
	// back (the "tool" messages after the last assistant message), one per
	// line, as a model that reports what its tools returned.
	EchoTools bool
	// ToolCalls are function calls the assistant asks for. A call without an
	// ID gets a fresh `call_…` ID on every request.
	ToolCalls []ToolCall
	// FinishReason overrides the finish reason; empty means "tool_calls"
	// when ToolCalls is set and "stop" otherwise. On /v1/responses, "length"
	// marks the response incomplete.
	FinishReason string
	// Usage, when set, is reported instead of the computed token counts. A
	// zero TotalTokens is filled with the sum of the other two.
	Usage *Usage
	// Error, when set, is sent in OpenAI's error envelope with Status (500
	// when Status is 0), also to streaming requests, as OpenAI does before a
	// stream starts.
	Error *APIError
	// Status is the HTTP status of an Error or RawBody reply; 0 means 500
	// for Error and 200 otherwise.
	Status int
	// RawBody, when not nil, is sent as is with ContentType (default
	// application/json) and Status, to streaming requests too; use it for
	// bodies no well-behaved server would send.
	RawBody []byte
	// ContentType is the Content-Type of a RawBody reply.
	ContentType string
	// Header holds extra response headers, such as Retry-After.
	Header http.Header
	// Delay holds the response headers back this long. A client that gives
	// up meanwhile is recorded as cancelled.
	Delay time.Duration
	// ChunkDelay is the pause between two events of a stream.
	ChunkDelay time.Duration
	// DropAfter, when positive, cuts a stream's connection right after its
	// first DropAfter events, so the client sees the stream break off
	// without a finish chunk or [DONE], as when an upstream crashes
	// mid-answer.
	DropAfter int
}

// ToolCall is one function call in an assistant reply.
type ToolCall struct {
	// ID is the call's ID; empty means a fresh `call_…` per request.
	ID string
	// Name is the function's name.
	Name string
	// Arguments is the JSON text of the arguments, sent as is: a stand-in
	// must be able to send malformed arguments too.
	Arguments string
}

// APIError is the body of OpenAI's error envelope
// {"error":{"message","type","param","code"}}. An empty Param or Code is
// sent as null.
type APIError struct {
	// Message is the human-readable description.
	Message string
	// Type is the error class, such as "invalid_request_error".
	Type string
	// Param names the request field at fault.
	Param string
	// Code is the machine-readable code, such as "rate_limit_exceeded".
	Code string
}

// Usage is a reply's token accounting. On /v1/responses PromptTokens is
// reported as input_tokens and CompletionTokens as output_tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Text returns a reply whose assistant message is content.
func Text(content string) Reply {
	return Reply{Content: content}
}

// Echo returns a reply that repeats the last user message of the request.
func Echo() Reply {
	return Reply{Echo: true}
}

// EchoToolResults returns a reply that repeats the tool results of the
// request, one per line.
func EchoToolResults() Reply {
	return Reply{EchoTools: true}
}

// JSONContent returns a reply whose assistant message is v encoded as JSON,
// as a model answering with structured output does. It panics if v cannot be
// encoded, which is a mistake in the test, not a condition to handle.
func JSONContent(v any) Reply {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("upstreamtest: JSONContent: %v", err))
	}
	return Reply{Content: string(b)}
}

// ToolCalls returns a reply in which the assistant calls the given functions;
// its finish reason is "tool_calls".
func ToolCalls(calls ...ToolCall) Reply {
	return Reply{ToolCalls: calls}
}

// Call returns a call of the function name with the JSON arguments; its ID
// is generated per request.
func Call(name, arguments string) ToolCall {
	return ToolCall{Name: name, Arguments: arguments}
}

// Error returns a reply that fails with status and OpenAI's error envelope
// carrying errType (such as "invalid_request_error" or "server_error") and
// message.
func Error(status int, errType, message string) Reply {
	return Reply{Status: status, Error: &APIError{Type: errType, Message: message}}
}

// Raw returns a reply that sends body as is, with status and contentType
// (application/json when empty).
func Raw(status int, contentType string, body []byte) Reply {
	if body == nil {
		body = []byte{}
	}
	return Reply{Status: status, ContentType: contentType, RawBody: body}
}

// WithDelay returns r holding its response headers back for d.
func (r Reply) WithDelay(d time.Duration) Reply {
	r.Delay = d
	return r
}

// WithChunkDelay returns r pausing for d between two stream events.
func (r Reply) WithChunkDelay(d time.Duration) Reply {
	r.ChunkDelay = d
	return r
}

// WithUsage returns r reporting u instead of the computed token counts.
func (r Reply) WithUsage(u Usage) Reply {
	r.Usage = &u
	return r
}

// WithFinishReason returns r finishing with reason, such as "length".
func (r Reply) WithFinishReason(reason string) Reply {
	r.FinishReason = reason
	return r
}

// WithHeader returns r sending the response header key: value as well.
func (r Reply) WithHeader(key, value string) Reply {
	r.Header = r.Header.Clone()
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header.Add(key, value)
	return r
}

// WithDropAfter returns r cutting a stream's connection after n events.
func (r Reply) WithDropAfter(n int) Reply {
	r.DropAfter = n
	return r
}

// prepared is a Reply with everything that does not depend on the request
// worked out once, when it is scripted, so that serving it stays cheap.
type prepared struct {
	reply Reply
	// answer is nil when the content depends on the request (Echo).
	answer *answer
	// choices is the encoded non-streaming `choices` array, or nil when it
	// differs per request (Echo, generated tool call IDs).
	choices []byte
	// errorBody is the encoded error envelope of an Error reply.
	errorBody []byte
}

// answer is the assistant message of one response.
type answer struct {
	content string
	// words is content split into stream chunks.
	words            []string
	calls            []ToolCall
	finishReason     string
	completionTokens int
}

func prepare(r Reply) *prepared {
	// Copy what the caller could change after scripting, since handlers read
	// it concurrently.
	r.ToolCalls = slices.Clone(r.ToolCalls)
	r.Header = r.Header.Clone()
	if r.RawBody != nil {
		r.RawBody = bytes.Clone(r.RawBody)
	}
	if r.Error != nil {
		e := *r.Error
		r.Error = &e
	}
	if r.Usage != nil {
		u := *r.Usage
		if u.TotalTokens == 0 {
			u.TotalTokens = u.PromptTokens + u.CompletionTokens
		}
		r.Usage = &u
	}
	p := &prepared{reply: r}
	switch {
	case r.RawBody != nil:
	case r.Error != nil:
		p.errorBody = appendErrorEnvelope(nil, *r.Error)
	case !r.Echo && !r.EchoTools:
		p.answer = newAnswer(r, r.Content)
		if !slices.ContainsFunc(r.ToolCalls, func(c ToolCall) bool { return c.ID == "" }) {
			p.choices = appendChatChoices(nil, p.answer)
		}
	}
	return p
}

func newAnswer(r Reply, content string) *answer {
	a := &answer{
		content:          content,
		words:            splitWords(content),
		calls:            r.ToolCalls,
		finishReason:     r.FinishReason,
		completionTokens: CountTokens(content),
	}
	for _, c := range r.ToolCalls {
		a.completionTokens += CountTokens(c.Name) + CountTokens(c.Arguments)
	}
	if a.finishReason == "" {
		a.finishReason = "stop"
		if len(r.ToolCalls) > 0 {
			a.finishReason = "tool_calls"
		}
	}
	return a
}

// answerFor returns the answer to a request whose last user message is
// lastUser, with IDs for tool calls that have none.
func (p *prepared) answerFor(s *Server, lastUser string) *answer {
	a := p.answer
	if a == nil {
		a = newAnswer(p.reply, lastUser)
	}
	if p.choices != nil || !slices.ContainsFunc(a.calls, func(c ToolCall) bool { return c.ID == "" }) {
		return a
	}
	withIDs := *a
	withIDs.calls = slices.Clone(a.calls)
	for i := range withIDs.calls {
		if withIDs.calls[i].ID == "" {
			withIDs.calls[i].ID = s.newID("call_")
		}
	}
	return &withIDs
}

// usage returns the usage to report for an answer to a prompt of
// promptTokens.
func (p *prepared) usage(a *answer, promptTokens int) Usage {
	if p.reply.Usage != nil {
		return *p.reply.Usage
	}
	return Usage{
		PromptTokens:     promptTokens,
		CompletionTokens: a.completionTokens,
		TotalTokens:      promptTokens + a.completionTokens,
	}
}

func (p *prepared) status() int {
	switch {
	case p.reply.Status != 0:
		return p.reply.Status
	case p.reply.Error != nil:
		return http.StatusInternalServerError
	default:
		return http.StatusOK
	}
}
