package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/response"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/workflows"
)

// flushWait bounds how long a finished run's stream waits for the events
// still on their way from the worker; the run's result covers what misses it.
const flushWait = time.Second

// streamResponses runs a prompt as responses does, and streams OpenAI's
// Responses events while it runs. It subscribes to the run's subject before
// it starts the run, so no delta can be missed for want of a subscriber,
// then streams the first turn (streamTurn). The run signs its events with
// a key made here, and the subscription takes no other.
//
// It returns the turn it finished with, ok false when the stream ended
// before the turn did.
func (g *Gateway) streamResponses(w http.ResponseWriter, r *http.Request, in run.Input, v *version, ticket *admission.Ticket) (out run.Turn, ok bool) {
	key := runstream.NewEventKey()
	sub, err := runstream.Subscribe(g.cfg.NATS, in.ResponseID, key)
	if err != nil {
		g.log.Warn("subscribe to run stream", "err", err, "response_id", in.ResponseID)
		writeAPIError(w, errStreamUnavailable())
		return
	}
	defer func() { _ = sub.Close() }()
	in.StreamSubject = runstream.Subject(in.ResponseID)
	in.TurnSubject = in.StreamSubject
	in.EventKey = key
	wait, err := g.cfg.Runs.Start(r.Context(), in, runs.Accepted)
	if err != nil {
		g.log.Error("start prompt run", "err", err)
		writeAPIError(w, errRunNotStarted())
		return
	}
	s := newResponseStream(w, http.NewResponseController(w).Flush, in, v, run.Turn{ResponseID: in.ResponseID, Turn: 1}, time.Now())
	return g.streamTurn(w, r, sub, s, wait, g.firstTurn.announceWait, ticket)
}

// streamTurn streams one turn of a run whose events come on sub, once the
// turn is under way (wait gives its output when it ends): response.created
// and response.in_progress at once, the text and the tool calls as the run
// makes them, and, when the turn has ended, the closing events and
// response.completed (response.incomplete, response.failed) carrying the
// Response object that GET /v1/responses/{id} returns. A client that goes
// away ends the stream, not the run: runs are durable. wait is asked for
// the turn's output after askDelay: a first turn announces its end on sub
// (run.Input.TurnSubject), after every event of the turn, and is asked
// only when it has not done so in time. The ticket is done with the
// turn's tokens before the closing events are sent. It returns the turn
// it finished with; ok is false when the stream ended first.
func (g *Gateway) streamTurn(w http.ResponseWriter, r *http.Request, sub *runstream.Subscription, s *responseStream, wait runs.Wait, askDelay time.Duration, ticket *admission.Ticket) (run.Turn, bool) {
	startEventStream(w)
	s.start()

	done, stop := askAfter(askDelay, wait)
	defer stop()
	for s.err == nil {
		select {
		case ev := <-sub.Events():
			if out, ok := workflows.AnnouncedTurn(ev); ok {
				// The run announces the end after its events; one still
				// on its way is covered by the turn itself, as after a gap.
				ticket.Done(turnTokens(out))
				s.finish(out)
				return out, true
			}
			s.event(ev)
		case res := <-done:
			if r.Context().Err() != nil {
				return run.Turn{}, false
			}
			ctx, cancel := context.WithTimeout(r.Context(), flushWait)
			rest, _ := sub.Flush(ctx)
			cancel()
			for _, ev := range rest {
				s.event(ev)
			}
			if res.err != nil {
				g.log.Error("prompt run failed", "err", res.err, "response_id", s.head.ResponseID)
				res.out = run.Turn{Status: run.StatusFailed, Error: runs.ServerFailure(s.in.ResponseID)}
			}
			ticket.Done(turnTokens(res.out))
			s.finish(res.out)
			return res.out, true
		case <-r.Context().Done():
			return run.Turn{}, false
		}
	}
	return run.Turn{}, false
}

// streamContinue continues a run as continueResponse does and streams
// the next turn (head) as streamResponses streams the first: it
// subscribes to the turn's subject before it sends the input. A continue
// the run refuses is answered like an unstreamed one, before any event.
//
// It returns the turn it finished with, as streamTurn does.
func (g *Gateway) streamContinue(w http.ResponseWriter, r *http.Request, in run.Input, v *version, ci run.ContinueInput, head run.Turn, ticket *admission.Ticket) (out run.Turn, ok bool) {
	key := runstream.NewEventKey()
	sub, err := runstream.Subscribe(g.cfg.NATS, head.ResponseID, key)
	if err != nil {
		g.log.Warn("subscribe to run stream", "err", err, "response_id", head.ResponseID)
		writeAPIError(w, errStreamUnavailable())
		return
	}
	defer func() { _ = sub.Close() }()
	ci.StreamSubject, ci.EventKey = runstream.Subject(head.ResponseID), key
	wait, err := g.cfg.Runs.Continue(r.Context(), in.ResponseID, ci, runs.Accepted)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		writeAPIError(w, g.continueError(ci.PreviousResponseID, err))
		return
	}
	s := newResponseStream(w, http.NewResponseController(w).Flush, in, v, head, time.Now())
	return g.streamTurn(w, r, sub, s, wait, 0, ticket)
}

// responseStream turns a run's events (package runstream) into OpenAI's
// Responses event stream.
//
// Text that a client has been sent cannot be taken back, and OpenAI has no
// event that retracts it, so the stream never sends text the run may yet
// disown:
//
//   - A reply that cannot be repaired (text output, or structured output
//     without repairs) is streamed live, delta by delta.
//   - A structured reply that may be repaired is held until the workflow
//     publishes its verdict: accepted, it is sent then, in one delta;
//     rejected, it is dropped, and the repair call's reply is held in turn.
//     The client sees only the reply that became the output.
//   - Temporal retries a model call that failed, even halfway through its
//     stream. Deltas carry the call and the attempt; those of an attempt
//     older than one already seen are dropped. A retry usually writes the
//     same text again: what the client already has is skipped and the rest
//     continues the same item. A retry that writes something else cannot
//     continue it: the item is closed with status "incomplete" and the
//     retry's text goes to a new message item at the next output_index.
//     Such an abandoned item is not part of the run's output: the final
//     Response, like GET /v1/responses/{id}, holds only the output message,
//     under the id it was streamed with.
//
// Tool calls are items of their own, each at the next output_index in the
// order the run reports them, between and around the message items: a
// connection tool call (mcp_call) is added when it starts and done when it
// ends; a call of the caller's function (function_call) and a call waiting
// for approval (mcp_approval_request) are added and done at once, as the
// turn pauses for them. Item ids are those of the Response (package
// response), so the final Response names every item as it was streamed.
//
// Core NATS may lose a message; a gap in an attempt's sequence numbers
// stops its live text. The workflow's result settles the rest: when the
// turn has ended, the message is brought to the output text by the same
// rule (what is missing is sent as one more delta), so the deltas of the
// final message always add up to its text; the tool calls of the result
// that no event announced, or whose end no event reported, are streamed
// then, and none twice.
type responseStream struct {
	w     io.Writer
	flush func() error
	err   error // the first write error: the client went away
	seq   int64
	// buf holds the event being written, enc encodes into it; both are
	// reused from event to event.
	buf bytes.Buffer
	enc *json.Encoder
	in  run.Input
	// head is the turn as it starts: its response id and number, and the
	// response it continues.
	head    run.Turn
	v       *version
	created time.Time
	// hold is set when a reply may be repaired.
	hold bool

	// The newest attempt of the newest call seen, and its text so far.
	call    int
	attempt int32
	nextSeq int
	gap     bool
	text    strings.Builder

	// item is the open message item, nil when none is open.
	item *streamItem
	// items counts the message items opened; outputs, the output indexes
	// used.
	items   int
	outputs int
	// msgID is the id of the last message item opened.
	msgID string

	// tools are the tool call items streamed, by item id; toolOrder, in
	// the order they were added.
	tools     map[string]*toolItem
	toolOrder []*toolItem
}

// toolItem is a tool call item of the stream.
type toolItem struct {
	id    string
	index int
	item  response.OutputItem // as added
	done  bool
}

type streamItem struct {
	id    string
	index int
	text  string // what the client has been sent
}

// newResponseStream returns the stream of the turn head (ResponseID, Turn,
// PreviousResponseID) of the run of in.
func newResponseStream(w io.Writer, flush func() error, in run.Input, v *version, head run.Turn, created time.Time) *responseStream {
	head.Status = run.StatusInProgress
	s := &responseStream{w: w, flush: flush, in: in, head: head, v: v, created: created, tools: map[string]*toolItem{}}
	s.enc = json.NewEncoder(&s.buf)
	if d := v.doc; d != nil {
		s.hold = d.Output.Structured() && d.AllowMultipleCalls && d.LLMRetryLimit > 0
	}
	return s
}

// send stamps ev with typ and the next sequence number, writes it as a
// server-sent event and flushes it to the client.
func (s *responseStream) send(typ string, ev response.Event) {
	if s.err != nil {
		return
	}
	h := ev.Header()
	h.Type, h.SequenceNumber = typ, s.seq
	s.seq++
	s.buf.Reset()
	s.buf.WriteString("event: ")
	s.buf.WriteString(typ)
	s.buf.WriteString("\ndata: ")
	// Encode ends the data line; the blank line after it ends the event.
	if s.err = s.enc.Encode(ev); s.err != nil {
		return
	}
	s.buf.WriteByte('\n')
	if _, s.err = s.w.Write(s.buf.Bytes()); s.err == nil {
		s.err = s.flush()
	}
}

func (s *responseStream) start() {
	resp := buildResponse(s.in, s.v, s.head, s.created)
	s.send(response.EventCreated, &response.ResponseEvent{Response: resp})
	s.send(response.EventInProgress, &response.ResponseEvent{Response: resp})
}

// event applies one of the run's events.
func (s *responseStream) event(ev runstream.Event) {
	switch ev.Type {
	case runstream.TypeDelta, runstream.TypeCallDone:
		if !s.current(ev) {
			return
		}
		if ev.Seq != s.nextSeq {
			s.gap = true
		}
		s.nextSeq = ev.Seq + 1
		s.text.WriteString(ev.Text)
		if !s.hold && !s.gap {
			s.show(s.text.String())
		}
	case runstream.TypeOutputAccepted:
		if ev.Call == s.call && s.hold && !s.gap {
			s.show(s.text.String())
		}
	case runstream.TypeOutputRejected:
		if ev.Call == s.call {
			s.text.Reset()
			s.gap = true // nothing more of this call is shown
		}
	case runstream.TypeToolCall:
		if t := ev.Tool; t != nil {
			s.toolStarted(run.ToolCall{ID: t.CallID, Name: t.Name, ServerLabel: t.ServerLabel, Arguments: t.Arguments, ApprovalRequestID: t.ApprovalRequestID})
		}
	case runstream.TypeToolResult:
		if t := ev.Tool; t != nil {
			s.toolEnded(run.ToolCall{ID: t.CallID, Name: t.Name, ServerLabel: t.ServerLabel, Arguments: t.Arguments, Output: t.Output, Error: t.Error, ApprovalRequestID: t.ApprovalRequestID})
		}
	case runstream.TypeFunctionCall:
		if t := ev.Tool; t != nil {
			s.functionCall(run.FunctionCall{CallID: t.CallID, Name: t.Name, Arguments: t.Arguments})
		}
	case runstream.TypeApprovalRequest:
		if t := ev.Tool; t != nil {
			s.approvalRequest(run.ApprovalRequest{ID: t.ID, CallID: t.CallID, Name: t.Name, ServerLabel: t.ServerLabel, Arguments: t.Arguments})
		}
	}
}

// addTool opens the tool call item id at the next output_index, unless the
// stream has one of that id; it reports whether it did.
func (s *responseStream) addTool(id string, item response.OutputItem) bool {
	if s.tools[id] != nil {
		return false
	}
	it := &toolItem{id: id, index: s.outputs, item: item}
	s.outputs++
	s.tools[id] = it
	s.toolOrder = append(s.toolOrder, it)
	s.send(response.EventOutputItemAdded, &response.OutputItemEvent{OutputIndex: it.index, Item: item})
	return true
}

// doneTool closes a tool call item with its finished form.
func (s *responseStream) doneTool(id string, item response.OutputItem) {
	it := s.tools[id]
	it.done = true
	s.send(response.EventOutputItemDone, &response.OutputItemEvent{OutputIndex: it.index, Item: item})
}

// toolStarted streams a connection tool call that starts.
func (s *responseStream) toolStarted(tc run.ToolCall) {
	id := response.MCPCallID(tc.ID)
	item := response.MCPCallItem(run.ToolCall{ID: tc.ID, Name: tc.Name, ServerLabel: tc.ServerLabel, Arguments: tc.Arguments, ApprovalRequestID: tc.ApprovalRequestID})
	item.Status = run.StatusInProgress
	if s.addTool(id, item) {
		s.send(response.EventMCPCallInProgress, &response.MCPCallEvent{ItemID: id, OutputIndex: s.tools[id].index})
	}
}

// toolEnded streams the end of a connection tool call, and its start when
// that was not streamed.
func (s *responseStream) toolEnded(tc run.ToolCall) {
	s.toolStarted(tc)
	id := response.MCPCallID(tc.ID)
	it := s.tools[id]
	if it.done {
		return
	}
	item := response.MCPCallItem(tc)
	typ := response.EventMCPCallCompleted
	if item.Status == run.StatusFailed {
		typ = response.EventMCPCallFailed
	}
	s.send(typ, &response.MCPCallEvent{ItemID: id, OutputIndex: it.index})
	s.doneTool(id, item)
}

// functionCall streams a call of the caller's function, once.
func (s *responseStream) functionCall(fc run.FunctionCall) {
	id := response.FunctionCallID(fc.CallID)
	if !s.addTool(id, response.FunctionCallItem(run.FunctionCall{CallID: fc.CallID, Name: fc.Name}, run.StatusInProgress)) {
		return
	}
	index := s.tools[id].index
	s.send(response.EventFunctionCallArgumentsDelta, &response.FunctionCallArgumentsDeltaEvent{ItemID: id, OutputIndex: index, Delta: fc.Arguments})
	s.send(response.EventFunctionCallArgumentsDone, &response.FunctionCallArgumentsDoneEvent{ItemID: id, OutputIndex: index, Name: fc.Name, Arguments: fc.Arguments})
	s.doneTool(id, response.FunctionCallItem(fc, run.StatusCompleted))
}

// approvalRequest streams a call waiting for approval, once.
func (s *responseStream) approvalRequest(a run.ApprovalRequest) {
	item := response.ApprovalRequestItem(a)
	if s.addTool(a.ID, item) {
		s.doneTool(a.ID, item)
	}
}

// current reports whether ev belongs to the newest attempt of the newest
// call, making it the newest when it is newer.
func (s *responseStream) current(ev runstream.Event) bool {
	switch {
	case ev.Call < s.call || (ev.Call == s.call && ev.Attempt < s.attempt):
		return false
	case ev.Call > s.call || ev.Attempt > s.attempt:
		s.call, s.attempt = ev.Call, ev.Attempt
		s.nextSeq, s.gap = 1, false
		s.text.Reset()
	}
	return true
}

// show brings the open message's text to text: what goes beyond what the
// client has is sent as a delta; text the client already has is skipped;
// text that does not continue it goes to a new item (see responseStream).
func (s *responseStream) show(text string) {
	if s.item != nil {
		switch {
		case strings.HasPrefix(s.item.text, text):
			return
		case !strings.HasPrefix(text, s.item.text):
			s.closeItem(run.StatusIncomplete)
		}
	}
	if text == "" {
		return
	}
	if s.item == nil {
		s.openItem()
	}
	s.send(response.EventOutputTextDelta, &response.OutputTextDeltaEvent{
		ItemID: s.item.id, OutputIndex: s.item.index, Delta: text[len(s.item.text):], Logprobs: []any{},
	})
	s.item.text = text
}

func (s *responseStream) openItem() {
	s.items++
	// A retry's item is _r2, _r3…: a bare _2 is the next turn's message.
	id := response.MessageID(s.head.ResponseID)
	if s.items > 1 {
		id += "_r" + strconv.Itoa(s.items)
	}
	s.item = &streamItem{id: id, index: s.outputs}
	s.outputs++
	s.msgID = id
	s.send(response.EventOutputItemAdded, &response.OutputItemEvent{OutputIndex: s.item.index, Item: response.MessageItem(id, run.StatusInProgress)})
	s.send(response.EventContentPartAdded, &response.ContentPartEvent{ItemID: id, OutputIndex: s.item.index, Part: response.NewOutputText("")})
}

func (s *responseStream) closeItem(status string) {
	it := s.item
	s.item = nil
	part := response.NewOutputText(it.text)
	s.send(response.EventOutputTextDone, &response.OutputTextDoneEvent{ItemID: it.id, OutputIndex: it.index, Text: it.text, Logprobs: []any{}})
	s.send(response.EventContentPartDone, &response.ContentPartEvent{ItemID: it.id, OutputIndex: it.index, Part: part})
	s.send(response.EventOutputItemDone, &response.OutputItemEvent{OutputIndex: it.index, Item: response.MessageItem(it.id, status, part)})
}

// finish closes the stream with the turn's output.
func (s *responseStream) finish(out run.Turn) {
	if out.ResponseID == "" { // a turn without its ids, as a failed run's stand-in: the head's
		out.ResponseID, out.Turn, out.PreviousResponseID = s.head.ResponseID, s.head.Turn, s.head.PreviousResponseID
	}
	resp := buildResponse(s.in, s.v, out, s.created)
	var message *response.Message
	for _, o := range resp.Output {
		if m, ok := o.(*response.Message); ok {
			message = m
		}
	}

	for _, tc := range out.ToolCalls {
		s.toolEnded(tc)
	}
	switch {
	case out.Status == run.StatusFailed:
		// The output is not streamed: the Response says what there is.
		if s.item != nil {
			s.closeItem(run.StatusIncomplete)
		}
	case message != nil:
		s.show(out.Text)
		if s.item == nil { // an empty reply
			s.openItem()
		}
		status := run.StatusCompleted
		if out.Status == run.StatusIncomplete {
			status = run.StatusIncomplete
		}
		s.closeItem(status)
	case s.item != nil:
		s.closeItem(run.StatusIncomplete)
	}
	if s.msgID != "" && message != nil {
		message.ID = s.msgID
	}
	if out.Status != run.StatusFailed {
		for _, fc := range out.FunctionCalls {
			s.functionCall(fc)
		}
		for _, a := range out.ApprovalRequests {
			s.approvalRequest(a)
		}
	}
	// A tool call the run started and never finished (the workflow
	// failed): it is not part of the output. Only a connection tool call
	// can be open: the other items are done as soon as they are added.
	for _, it := range s.toolOrder {
		if c, ok := it.item.(*response.MCPCall); ok && !it.done {
			abandoned := *c
			abandoned.Status = run.StatusIncomplete
			s.doneTool(it.id, &abandoned)
		}
	}

	typ := response.EventCompleted
	switch out.Status {
	case run.StatusFailed:
		typ = response.EventFailed
	case run.StatusIncomplete:
		typ = response.EventIncomplete
	}
	s.send(typ, &response.ResponseEvent{Response: resp})
}
