// Package chat is a client for OpenAI-compatible chat completions, as a
// prompt run calls a model deployment: the wire types, the request body
// (defaults, then the caller's parameters, then what the call sets), one
// HTTP request, whole or streamed, and the upstream's failures as *Error,
// which says whether a retry may pass. It never retries: its caller's retry
// policy does.
package chat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/budhq/bud"
	"github.com/budhq/bud/egress"
)

// maxReplyBytes bounds what is read of an upstream reply.
const maxReplyBytes = 32 << 20

// Client calls chat completions endpoints. The zero value is ready to use.
type Client struct {
	// HTTP makes the requests; nil means http.DefaultClient. It must not
	// retry.
	HTTP *http.Client
}

// Endpoint is where a call goes.
type Endpoint struct {
	// URL is the chat completions endpoint (".../v1/chat/completions").
	URL string
	// APIKey, when set, is sent as a Bearer token.
	APIKey string
}

// Request is one chat completion request.
type Request struct {
	// Model is the model name the upstream knows.
	Model string
	// Defaults are parameters for what Params leaves out, each a JSON
	// value, by field name.
	Defaults map[string]json.RawMessage
	// Params are the caller's parameters, a JSON object (or empty, or
	// null); they win over Defaults. Their stream and stream_options are
	// ignored: Stream decides.
	Params   json.RawMessage
	Messages []Message
	// ResponseFormat, when set, replaces any response_format of the
	// parameters.
	ResponseFormat json.RawMessage
	Tools          []Tool
	// Stream asks the upstream for a stream of chunks, with usage.
	Stream bool
}

// Reply is the model's reply.
type Reply struct {
	// Content is the assistant's text; empty when it only calls tools.
	Content string
	// ToolCalls are the calls the model makes, each of type "function"
	// unless the upstream said otherwise.
	ToolCalls    []ToolCall
	FinishReason string
	// Usage is as the upstream reported it, with TotalTokens filled in
	// when the upstream left it out.
	Usage Usage
	// Model is the model the upstream says answered.
	Model string
	// Latency is the time from sending the request to reading the reply.
	Latency time.Duration
}

// Call sends req to ep in exactly one HTTP request and returns the reply.
// With req.Stream, each piece of content goes to delta (when not nil) as it
// arrives, and the reply is the same as without; an upstream that answers
// whole anyway is one piece. A failed call is an *Error, except for Params
// that are not a JSON object.
func (c Client) Call(ctx context.Context, ep Endpoint, req Request, delta func(string)) (Reply, error) {
	body, err := req.body()
	if err != nil {
		return Reply{}, fmt.Errorf("request body: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return Reply{}, &Error{Kind: InvalidURL, Message: "the endpoint's URL is unusable", cause: err.Error()}
	}
	SetHeaders(hreq.Header, req.Stream, ep.APIKey)

	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	start := time.Now()
	resp, err := hc.Do(hreq)
	if egress.IsRefused(err) {
		return Reply{}, &Error{Kind: Refused, Message: "the model deployment's address is refused by the egress policy", cause: err.Error()}
	}
	if err != nil {
		return Reply{}, &Error{Kind: Unreachable, Message: "the model deployment could not be reached", cause: err.Error()}
	}
	defer resp.Body.Close()

	var out Reply
	if req.Stream && resp.StatusCode < 300 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		if out, err = readStream(resp.Body, delta); err != nil {
			return Reply{}, err
		}
	} else {
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
		if err != nil {
			return Reply{}, &Error{Kind: BadReply, Status: resp.StatusCode, Message: "the model deployment's reply broke off", cause: "read reply: " + err.Error()}
		}
		if resp.StatusCode >= 300 {
			return Reply{}, statusError(resp, raw)
		}
		if out, err = decodeCompletion(raw, resp.StatusCode); err != nil {
			return Reply{}, err
		}
		// An upstream that ignored `stream` answered whole: the stream is
		// that one piece.
		if req.Stream && delta != nil {
			delta(out.Content)
		}
	}
	out.Latency = time.Since(start)
	if out.Usage.TotalTokens == 0 {
		out.Usage.TotalTokens = out.Usage.PromptTokens + out.Usage.CompletionTokens
	}
	for i := range out.ToolCalls {
		if out.ToolCalls[i].Type == "" {
			out.ToolCalls[i].Type = "function"
		}
	}
	return out, nil
}

// body is the request the upstream gets: the defaults, then the
// parameters over them, then what the call sets.
func (req Request) body() ([]byte, error) {
	fields := make(map[string]json.RawMessage, len(req.Defaults)+8)
	for k, v := range req.Defaults {
		fields[k] = v
	}
	if len(req.Params) > 0 && !bytes.Equal(bytes.TrimSpace(req.Params), []byte("null")) {
		var params map[string]json.RawMessage
		if err := json.Unmarshal(req.Params, &params); err != nil {
			return nil, fmt.Errorf("model params: %w", err)
		}
		for k, v := range params {
			fields[k] = v
		}
	}
	// Whether the call streams is the caller's choice, not the parameters'.
	delete(fields, "stream")
	delete(fields, "stream_options")
	for k := range fields {
		if bud.Respelled(k) {
			delete(fields, k)
		}
	}

	var err error
	set := func(k string, v any) {
		if err != nil {
			return
		}
		fields[k], err = json.Marshal(v)
	}
	set("model", req.Model)
	set("messages", req.Messages)
	if len(req.ResponseFormat) > 0 {
		fields["response_format"] = req.ResponseFormat
	}
	if len(req.Tools) > 0 {
		set("tools", req.Tools)
	}
	if req.Stream {
		set("stream", true)
		set("stream_options", map[string]bool{"include_usage": true})
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(fields)
}

// completion is the part of a chat.completion a reply uses.
type completion struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   *string    `json:"content"`
			ToolCalls []ToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage `json:"usage"`
}

// decodeCompletion reads a whole chat.completion.
func decodeCompletion(raw []byte, status int) (Reply, error) {
	var cc completion
	if err := json.Unmarshal(raw, &cc); err != nil || len(cc.Choices) == 0 {
		why := "no choices"
		if err != nil {
			why = err.Error()
		}
		return Reply{}, &Error{Kind: BadReply, Status: status, Message: "the model deployment sent a reply that is not a chat completion", cause: "unreadable reply: " + why}
	}
	choice := cc.Choices[0]
	out := Reply{
		ToolCalls:    choice.Message.ToolCalls,
		FinishReason: choice.FinishReason,
		Model:        cc.Model,
	}
	if choice.Message.Content != nil {
		out.Content = *choice.Message.Content
	}
	if cc.Usage != nil {
		out.Usage = *cc.Usage
	}
	return out, nil
}

// chunk is the part of a chat.completion.chunk a reply uses.
type chunk struct {
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content   *string `json:"content"`
			ToolCalls []struct {
				Index    int              `json:"index"`
				ID       string           `json:"id"`
				Type     string           `json:"type"`
				Function ToolCallFunction `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage `json:"usage"`
	// Error is set by servers that report a failure inside the stream.
	Error json.RawMessage `json:"error"`
}

// readStream reads a stream of chat.completion.chunk events, handing each
// piece of content to delta as soon as it is read, and returns the whole
// reply as a call without a stream would. A stream that ends before the
// model finished (no finish reason) broke off.
func readStream(body io.Reader, delta func(string)) (Reply, error) {
	broke := func(why string) error {
		return &Error{Kind: BadReply, Status: http.StatusOK, Message: "the model deployment's stream broke off", cause: "stream: " + why}
	}
	var (
		out     Reply
		content strings.Builder
		calls   []ToolCall
		done    bool
	)
	sc := bufio.NewScanner(io.LimitReader(body, maxReplyBytes))
	sc.Buffer(make([]byte, 0, 64<<10), maxReplyBytes)
	for !done && sc.Scan() {
		line := sc.Bytes()
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue // blank lines, comments, event names
		}
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, []byte("[DONE]")) {
			done = true
			break
		}
		var ch chunk
		if err := json.Unmarshal(data, &ch); err != nil {
			return Reply{}, &Error{Kind: BadReply, Status: http.StatusOK, Message: "the model deployment sent a stream that is not a chat completion stream", cause: "unreadable stream chunk: " + err.Error()}
		}
		if len(ch.Error) > 0 && !bytes.Equal(ch.Error, []byte("null")) {
			msg := upstreamMessage(http.StatusInternalServerError, data)
			return Reply{}, &Error{Kind: BadReply, Status: http.StatusOK, Message: msg, cause: "error in stream: " + msg}
		}
		if ch.Model != "" {
			out.Model = ch.Model
		}
		if ch.Usage != nil {
			out.Usage = *ch.Usage
		}
		for _, c := range ch.Choices {
			if c.Index != 0 {
				continue
			}
			if c.Delta.Content != nil && *c.Delta.Content != "" {
				content.WriteString(*c.Delta.Content)
				if delta != nil {
					delta(*c.Delta.Content)
				}
			}
			for _, tc := range c.Delta.ToolCalls {
				if tc.Index < 0 || tc.Index > 1024 {
					return Reply{}, broke(fmt.Sprintf("tool call index %d", tc.Index))
				}
				for len(calls) <= tc.Index {
					calls = append(calls, ToolCall{})
				}
				call := &calls[tc.Index]
				if tc.ID != "" {
					call.ID = tc.ID
				}
				if tc.Type != "" {
					call.Type = tc.Type
				}
				if tc.Function.Name != "" {
					call.Function.Name = tc.Function.Name
				}
				call.Function.Arguments += tc.Function.Arguments
			}
			if c.FinishReason != nil && *c.FinishReason != "" {
				out.FinishReason = *c.FinishReason
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Reply{}, broke(err.Error())
	}
	if !done && out.FinishReason == "" {
		return Reply{}, broke("ended before the model finished")
	}
	out.Content = content.String()
	out.ToolCalls = calls
	return out, nil
}

// SetHeaders sets the headers of a chat completions request to an
// OpenAI-compatible endpoint: a JSON body, the answer asked for as a stream
// or whole, and the provider key as a Bearer token when there is one.
func SetHeaders(h http.Header, stream bool, apiKey string) {
	h.Set("Content-Type", "application/json")
	if stream {
		h.Set("Accept", "text/event-stream")
	} else {
		h.Set("Accept", "application/json")
	}
	if apiKey != "" {
		h.Set("Authorization", "Bearer "+apiKey)
	}
}
