package upstreamtest

import (
	"encoding/json"
	"net/http"
	"time"
)

// responseObject is a Responses API `response`.
type responseObject struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	CreatedAt         int64              `json:"created_at"`
	Status            string             `json:"status"`
	Error             any                `json:"error"` // always null: a failed reply gets an error status instead
	IncompleteDetails *incompleteDetails `json:"incomplete_details"`
	Model             string             `json:"model"`
	Output            []any              `json:"output"`
	Usage             *responseUsage     `json:"usage"`
}

type incompleteDetails struct {
	Reason string `json:"reason"`
}

type responseUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

// messageItem is an output item of type "message".
type messageItem struct {
	Type    string       `json:"type"`
	ID      string       `json:"id"`
	Status  string       `json:"status"`
	Role    string       `json:"role"`
	Content []outputText `json:"content"`
}

type outputText struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
}

// functionCallItem is an output item of type "function_call".
type functionCallItem struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Status    string `json:"status"`
}

// responseEvent is one event of a Responses API stream; each type uses some
// of the fields.
type responseEvent struct {
	Type           string          `json:"type"`
	SequenceNumber int             `json:"sequence_number"`
	Response       *responseObject `json:"response,omitempty"`
	OutputIndex    *int            `json:"output_index,omitempty"`
	ItemID         string          `json:"item_id,omitempty"`
	ContentIndex   *int            `json:"content_index,omitempty"`
	Item           any             `json:"item,omitempty"`
	Part           *outputText     `json:"part,omitempty"`
	Delta          *string         `json:"delta,omitempty"`
	Text           *string         `json:"text,omitempty"`
	Arguments      *string         `json:"arguments,omitempty"`
}

// responses answers POST /v1/responses.
func (x *exchange) responses(cfg settings, decodeErr error) {
	if !x.validRequest(cfg, decodeErr) {
		return
	}
	p := x.s.nextReply(x.req.Model)
	if !x.begin(p) {
		return
	}
	var lastUser string
	if p.reply.Echo {
		lastUser = lastUserText(x.req.Input)
	}
	a := p.answerFor(x.s, lastUser)
	usage := p.usage(a, promptTokens(x.req.Input)+CountTokens(x.req.Instructions))

	resp := &responseObject{
		ID:        x.s.newID("resp_"),
		Object:    "response",
		CreatedAt: time.Now().Unix(),
		Status:    "completed",
		Model:     x.req.Model,
		Usage: &responseUsage{
			InputTokens:  usage.PromptTokens,
			OutputTokens: usage.CompletionTokens,
			TotalTokens:  usage.TotalTokens,
		},
	}
	if a.finishReason == "length" {
		resp.Status = "incomplete"
		resp.IncompleteDetails = &incompleteDetails{Reason: "max_output_tokens"}
	}
	var msg *messageItem
	if a.content != "" || len(a.calls) == 0 {
		msg = &messageItem{
			Type:    "message",
			ID:      x.s.newID("msg_"),
			Status:  "completed",
			Role:    "assistant",
			Content: []outputText{{Type: "output_text", Text: a.content, Annotations: []any{}}},
		}
		resp.Output = append(resp.Output, msg)
	}
	calls := make([]*functionCallItem, len(a.calls))
	for i, c := range a.calls {
		calls[i] = &functionCallItem{Type: "function_call", ID: x.s.newID("fc_"), CallID: c.ID, Name: c.Name, Arguments: c.Arguments, Status: "completed"}
		resp.Output = append(resp.Output, calls[i])
	}

	if !x.req.Stream {
		x.send(http.StatusOK, "application/json", p.reply.Header, marshal(resp))
		return
	}
	x.streamResponse(p, a, resp, msg, calls)
}

// streamResponse sends resp as the Responses API streams it: created and
// in_progress, then per output item its added event, deltas, done events,
// and finally completed (or incomplete).
func (x *exchange) streamResponse(p *prepared, a *answer, resp *responseObject, msg *messageItem, calls []*functionCallItem) {
	es := x.startStream(p)
	seq := 0
	emit := func(ev responseEvent) bool {
		ev.SequenceNumber = seq
		seq++
		b := append([]byte("event: "+ev.Type+"\ndata: "), marshal(ev)...)
		return es.send(append(b, "\n\n"...))
	}

	started := *resp
	started.Status = "in_progress"
	started.IncompleteDetails = nil
	started.Output = []any{}
	started.Usage = nil
	if !emit(responseEvent{Type: "response.created", Response: &started}) ||
		!emit(responseEvent{Type: "response.in_progress", Response: &started}) {
		return
	}

	index := 0
	if msg != nil {
		added := *msg
		added.Status = "in_progress"
		added.Content = []outputText{}
		empty := outputText{Type: "output_text", Annotations: []any{}}
		if !emit(responseEvent{Type: "response.output_item.added", OutputIndex: new(index), Item: &added}) ||
			!emit(responseEvent{Type: "response.content_part.added", OutputIndex: new(index), ItemID: msg.ID, ContentIndex: new(0), Part: &empty}) {
			return
		}
		for _, w := range a.words {
			if !emit(responseEvent{Type: "response.output_text.delta", OutputIndex: new(index), ItemID: msg.ID, ContentIndex: new(0), Delta: new(w)}) {
				return
			}
		}
		if !emit(responseEvent{Type: "response.output_text.done", OutputIndex: new(index), ItemID: msg.ID, ContentIndex: new(0), Text: new(a.content)}) ||
			!emit(responseEvent{Type: "response.content_part.done", OutputIndex: new(index), ItemID: msg.ID, ContentIndex: new(0), Part: &msg.Content[0]}) ||
			!emit(responseEvent{Type: "response.output_item.done", OutputIndex: new(index), Item: msg}) {
			return
		}
		index++
	}
	for _, c := range calls {
		added := *c
		added.Status = "in_progress"
		added.Arguments = ""
		if !emit(responseEvent{Type: "response.output_item.added", OutputIndex: new(index), Item: &added}) {
			return
		}
		for _, fragment := range splitArguments(c.Arguments) {
			if !emit(responseEvent{Type: "response.function_call_arguments.delta", OutputIndex: new(index), ItemID: c.ID, Delta: new(fragment)}) {
				return
			}
		}
		if !emit(responseEvent{Type: "response.function_call_arguments.done", OutputIndex: new(index), ItemID: c.ID, Arguments: new(c.Arguments)}) ||
			!emit(responseEvent{Type: "response.output_item.done", OutputIndex: new(index), Item: c}) {
			return
		}
		index++
	}
	last := "response.completed"
	if resp.Status == "incomplete" {
		last = "response.incomplete"
	}
	emit(responseEvent{Type: last, Response: resp})
}

// marshal encodes values of this file's types, which hold only strings,
// numbers and slices of them, so encoding cannot fail.
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("upstreamtest: encoding a response: " + err.Error())
	}
	return b
}
