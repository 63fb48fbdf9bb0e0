package upstreamtest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/budhq/bud/strictschema"
)

// chatCompletions answers POST /v1/chat/completions.
func (x *exchange) chatCompletions(cfg settings, decodeErr error) {
	if !x.validRequest(cfg, decodeErr) {
		return
	}
	if x.req.Messages == nil {
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "messages", Code: "missing_required_parameter", Message: "Missing required parameter: 'messages'."})
		return
	}
	if len(x.req.Messages) == 0 {
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "messages", Code: "empty_array", Message: "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."})
		return
	}
	if x.req.StreamOptions != nil && !x.req.Stream {
		// vLLM and OpenAI both refuse this; a gateway that adds stream
		// options must add them to streams only.
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "stream_options", Code: "invalid_value", Message: "The 'stream_options' parameter is only allowed when 'stream' is enabled."})
		return
	}
	if cfg.strict && !x.strictSchema() {
		return
	}
	p := x.s.nextReply(x.req.Model)
	if !x.begin(p) {
		return
	}
	var lastUser string
	switch {
	case p.reply.Echo:
		lastUser = lastUserText(x.req.Messages)
	case p.reply.EchoTools:
		lastUser = toolResults(x.req.Messages)
	}
	a := p.answerFor(x.s, lastUser)
	usage := p.usage(a, promptTokens(x.req.Messages))
	if x.req.Stream {
		includeUsage := x.req.StreamOptions != nil && x.req.StreamOptions.IncludeUsage
		x.streamChat(p, a, usage, includeUsage)
		return
	}
	x.completeChat(p, a, usage)
}

// completeChat sends a whole chat.completion object.
func (x *exchange) completeChat(p *prepared, a *answer, usage Usage) {
	b := make([]byte, 0, 256+len(p.choices))
	b = append(b, `{"id":"`...)
	b = x.s.appendID(b, "chatcmpl-")
	b = append(b, `","object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, time.Now().Unix(), 10)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, x.req.Model)
	b = append(b, `,"choices":`...)
	if p.choices != nil {
		b = append(b, p.choices...)
	} else {
		b = appendChatChoices(b, a)
	}
	b = append(b, `,"usage":`...)
	b = appendUsage(b, usage)
	b = append(b, "}\n"...)
	x.send(http.StatusOK, "application/json", p.reply.Header, b)
}

// appendChatChoices appends the `choices` array of a chat.completion.
func appendChatChoices(b []byte, a *answer) []byte {
	b = append(b, `[{"index":0,"message":{"role":"assistant","content":`...)
	if a.content == "" && len(a.calls) > 0 {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, a.content)
	}
	if len(a.calls) > 0 {
		b = append(b, `,"tool_calls":[`...)
		for i, c := range a.calls {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = appendJSONString(b, c.ID)
			b = append(b, `,"type":"function","function":{"name":`...)
			b = appendJSONString(b, c.Name)
			b = append(b, `,"arguments":`...)
			b = appendJSONString(b, c.Arguments)
			b = append(b, "}}"...)
		}
		b = append(b, ']')
	}
	b = append(b, `,"refusal":null},"logprobs":null,"finish_reason":`...)
	b = appendJSONString(b, a.finishReason)
	return append(b, "}]"...)
}

// streamChat sends the answer as OpenAI streams it: a chunk announcing the
// assistant role, one chunk per word of content, for each tool call a chunk
// with its ID and name followed by chunks of its arguments, a chunk with the
// finish reason, the usage chunk when the client asked for it, and [DONE].
func (x *exchange) streamChat(p *prepared, a *answer, usage Usage, includeUsage bool) {
	// Every chunk starts alike: same id, created and model.
	var prefix []byte
	prefix = append(prefix, `data: {"id":"`...)
	prefix = x.s.appendID(prefix, "chatcmpl-")
	prefix = append(prefix, `","object":"chat.completion.chunk","created":`...)
	prefix = strconv.AppendInt(prefix, time.Now().Unix(), 10)
	prefix = append(prefix, `,"model":`...)
	prefix = appendJSONString(prefix, x.req.Model)
	prefix = append(prefix, `,"choices":`...)

	es := x.startStream(p)
	buf := make([]byte, 0, 512)
	chunk := func(delta func([]byte) []byte, finishReason string) []byte {
		buf = append(buf[:0], prefix...)
		buf = append(buf, `[{"index":0,"delta":`...)
		buf = delta(buf)
		buf = append(buf, `,"logprobs":null,"finish_reason":`...)
		buf = appendNullableString(buf, finishReason)
		buf = append(buf, "}]"...)
		if includeUsage {
			// OpenAI sends usage: null in every chunk but the last when
			// usage was asked for.
			buf = append(buf, `,"usage":null`...)
		}
		return append(buf, "}\n\n"...)
	}

	if !es.send(chunk(func(b []byte) []byte { return append(b, `{"role":"assistant","content":""}`...) }, "")) {
		return
	}
	for _, w := range a.words {
		if !es.send(chunk(func(b []byte) []byte {
			b = append(b, `{"content":`...)
			b = appendJSONString(b, w)
			return append(b, '}')
		}, "")) {
			return
		}
	}
	for i, c := range a.calls {
		index := strconv.Itoa(i)
		if !es.send(chunk(func(b []byte) []byte {
			b = append(b, `{"tool_calls":[{"index":`...)
			b = append(b, index...)
			b = append(b, `,"id":`...)
			b = appendJSONString(b, c.ID)
			b = append(b, `,"type":"function","function":{"name":`...)
			b = appendJSONString(b, c.Name)
			return append(b, `,"arguments":""}}]}`...)
		}, "")) {
			return
		}
		for _, fragment := range splitArguments(c.Arguments) {
			if !es.send(chunk(func(b []byte) []byte {
				b = append(b, `{"tool_calls":[{"index":`...)
				b = append(b, index...)
				b = append(b, `,"function":{"arguments":`...)
				b = appendJSONString(b, fragment)
				return append(b, "}}]}"...)
			}, "")) {
				return
			}
		}
	}
	if !es.send(chunk(func(b []byte) []byte { return append(b, "{}"...) }, a.finishReason)) {
		return
	}
	if includeUsage {
		buf = append(buf[:0], prefix...)
		buf = append(buf, `[],"usage":`...)
		buf = appendUsage(buf, usage)
		buf = append(buf, "}\n\n"...)
		if !es.send(buf) {
			return
		}
	}
	es.send([]byte("data: [DONE]\n\n"))
}

// strictSchema answers 400, as OpenAI does, to a strict json_schema
// response format whose schema strict mode does not take, and reports
// whether the request may go on.
func (x *exchange) strictSchema() bool {
	var rf struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name   string          `json:"name"`
			Strict bool            `json:"strict"`
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	}
	if len(x.req.ResponseFormat) == 0 || json.Unmarshal(x.req.ResponseFormat, &rf) != nil || rf.Type != "json_schema" {
		return true
	}
	if rf.JSONSchema == nil {
		x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "response_format.json_schema", Code: "missing_required_parameter", Message: "Missing required parameter: 'response_format.json_schema'."})
		return false
	}
	if !rf.JSONSchema.Strict {
		return true
	}
	problems := strictschema.CheckJSON(rf.JSONSchema.Schema)
	if len(problems) == 0 {
		return true
	}
	x.fail(http.StatusBadRequest, APIError{Type: "invalid_request_error", Param: "response_format",
		Message: "Invalid schema for response_format '" + rf.JSONSchema.Name + "': " + problems[0].String()})
	return false
}
