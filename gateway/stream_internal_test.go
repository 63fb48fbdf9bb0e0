package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/runstream/runstreamtest"
)

const (
	textDocument = `{"deployment": "qwen", "messages": [{"role": "user", "content": "{{ input }}"}]}`
	// structuredDocument may repair a reply twice.
	structuredDocument = `{"deployment": "qwen", "messages": [{"role": "user", "content": "{{ input }}"}],
	  "output": {"type": "structured", "variables": [{"name": "score", "type": "integer", "required": true}]},
	  "allow_multiple_calls": true, "llm_retry_limit": 2}`
)

// streamHarness drives a responseStream without HTTP, NATS or Temporal,
// and reads what it wrote with the official OpenAI client's decoder.
type streamHarness struct {
	t   *testing.T
	buf bytes.Buffer
	s   *responseStream
}

func newStreamHarness(t *testing.T, doc string) *streamHarness {
	t.Helper()
	d, err := prompt.Parse([]byte(doc))
	require.NoError(t, err)
	c, err := prompt.Compile(d)
	require.NoError(t, err)
	h := &streamHarness{t: t}
	in := run.Input{ResponseID: "resp_abc", Deployment: "p", PromptVersion: 1, Document: []byte(doc)}
	h.s = newResponseStream(&h.buf, func() error { return nil }, in, &version{raw: []byte(doc), doc: d, compiled: c}, run.Turn{ResponseID: "resp_abc", Turn: 1}, time.Unix(1700000000, 0))
	h.s.start()
	return h
}

func (h *streamHarness) delta(call int, attempt int32, seq int, text string) {
	h.s.event(runstream.Event{Type: runstream.TypeDelta, Call: call, Attempt: attempt, Seq: seq, Text: text})
}

// events decodes everything written so far.
func (h *streamHarness) events() []responses.ResponseStreamEventUnion {
	h.t.Helper()
	raw := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: io.NopCloser(bytes.NewReader(h.buf.Bytes()))}
	st := ssestream.NewStream[responses.ResponseStreamEventUnion](ssestream.NewDecoder(raw), nil)
	var out []responses.ResponseStreamEventUnion
	for st.Next() {
		out = append(out, st.Current())
	}
	require.NoError(h.t, st.Err())
	for i, ev := range out {
		require.Equal(h.t, int64(i), ev.SequenceNumber, "sequence numbers count from 0 without a gap")
	}
	return out
}

func types(evs []responses.ResponseStreamEventUnion) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

// deltas joins the text deltas of each item, by item id.
func deltas(evs []responses.ResponseStreamEventUnion) (map[string]string, []string) {
	byItem := map[string]string{}
	var all []string
	for _, ev := range evs {
		if ev.Type == "response.output_text.delta" {
			byItem[ev.ItemID] += ev.Delta
			all = append(all, ev.Delta)
		}
	}
	return byItem, all
}

func completed(text string) run.Turn {
	return run.Turn{Status: run.StatusCompleted, Model: "qwen", Text: text, ModelCalls: 1}
}

var textItemEvents = []string{
	"response.output_item.added", "response.content_part.added",
}

var closingEvents = []string{
	"response.output_text.done", "response.content_part.done", "response.output_item.done",
}

func TestStreamLiveText(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	require.Equal(t, []string{"response.created", "response.in_progress"}, types(h.events()), "sent before anything of the run")

	h.delta(1, 1, 1, "Hello")
	require.Equal(t, "Hello", h.events()[4].Delta, "a delta goes out as soon as it comes in")
	h.delta(1, 1, 2, " world")
	h.s.event(runstream.Event{Type: runstream.TypeCallDone, Call: 1, Attempt: 1, Seq: 3, FinishReason: "stop"})
	h.s.finish(completed("Hello world"))

	evs := h.events()
	want := append([]string{"response.created", "response.in_progress"}, textItemEvents...)
	want = append(want, "response.output_text.delta", "response.output_text.delta")
	want = append(want, closingEvents...)
	require.Equal(t, append(want, "response.completed"), types(evs))
	byItem, all := deltas(evs)
	require.Equal(t, []string{"Hello", " world"}, all)
	require.Equal(t, map[string]string{"msg_abc": "Hello world"}, byItem)
	require.Equal(t, "Hello world", evs[6].Text)
	require.Equal(t, "msg_abc", evs[2].Item.ID)
	final := evs[len(evs)-1].Response
	require.Equal(t, responses.ResponseStatusCompleted, final.Status)
	require.Equal(t, "Hello world", final.OutputText())
	require.Equal(t, "msg_abc", final.Output[0].ID, "the Response names the message as it was streamed")
}

// TestStreamRetryReplayingTheSameTextContinues: an attempt that broke off
// is retried; the retry writes the same text, so the client gets only what
// it lacks, in the same item.
func TestStreamRetryReplayingTheSameTextContinues(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.delta(1, 1, 1, "Hello")
	h.delta(1, 1, 2, " brave")
	// Attempt 1 broke off; attempt 2 starts over.
	h.delta(1, 2, 1, "Hello")
	h.delta(1, 2, 2, " brave")
	h.delta(1, 2, 3, " new")
	h.delta(1, 1, 3, " late") // a straggler of the failed attempt
	h.delta(1, 2, 4, " world")
	h.s.finish(completed("Hello brave new world"))

	byItem, all := deltas(h.events())
	require.Equal(t, []string{"Hello", " brave", " new", " world"}, all, "nothing twice, nothing of the superseded attempt")
	require.Equal(t, map[string]string{"msg_abc": "Hello brave new world"}, byItem)
}

// TestStreamRetryWithOtherTextStartsANewItem: text already sent cannot be
// taken back, so a retry that answers differently goes to a new item and
// the first is closed incomplete; the Response holds only the new one.
func TestStreamRetryWithOtherTextStartsANewItem(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.delta(1, 1, 1, "Hello")
	h.delta(1, 1, 2, " brave")
	h.delta(1, 2, 1, "Goodbye")
	h.delta(1, 2, 2, " world")
	h.s.finish(completed("Goodbye world"))

	evs := h.events()
	want := []string{"response.created", "response.in_progress"}
	want = append(want, textItemEvents...)
	want = append(want, "response.output_text.delta", "response.output_text.delta")
	want = append(want, closingEvents...)
	want = append(want, textItemEvents...)
	want = append(want, "response.output_text.delta", "response.output_text.delta")
	want = append(want, closingEvents...)
	require.Equal(t, append(want, "response.completed"), types(evs))
	byItem, _ := deltas(evs)
	require.Equal(t, map[string]string{"msg_abc": "Hello brave", "msg_abc_r2": "Goodbye world"}, byItem)
	abandoned := evs[8]
	require.Equal(t, "response.output_item.done", abandoned.Type)
	require.Equal(t, "msg_abc", abandoned.Item.ID)
	require.Equal(t, "incomplete", string(abandoned.Item.Status))
	require.Equal(t, int64(1), evs[9].OutputIndex, "the retry's item comes next")
	final := evs[len(evs)-1].Response
	require.Len(t, final.Output, 1)
	require.Equal(t, "msg_abc_r2", final.Output[0].ID)
	require.Equal(t, "Goodbye world", final.OutputText())
}

// TestStreamHoldsRepairableRepliesUntilAccepted: a structured reply that
// may be repaired is sent only once the workflow accepts it; a rejected
// one is never sent, so the client sees no text twice and no text that is
// not the output.
func TestStreamHoldsRepairableRepliesUntilAccepted(t *testing.T) {
	h := newStreamHarness(t, structuredDocument)
	h.delta(1, 1, 1, `{"score": `)
	h.delta(1, 1, 2, `"high"}`)
	h.s.event(runstream.Event{Type: runstream.TypeCallDone, Call: 1, Attempt: 1, Seq: 3})
	h.s.event(runstream.Event{Type: runstream.TypeOutputRejected, Call: 1})
	h.delta(2, 1, 1, `{"score": `)
	h.delta(2, 1, 2, `9}`)
	h.s.event(runstream.Event{Type: runstream.TypeCallDone, Call: 2, Attempt: 1, Seq: 3})
	require.Equal(t, []string{"response.created", "response.in_progress"}, types(h.events()), "nothing before the verdict")

	h.s.event(runstream.Event{Type: runstream.TypeOutputAccepted, Call: 2})
	_, all := deltas(h.events())
	require.Equal(t, []string{`{"score": 9}`}, all, "the accepted reply, at once")

	out := completed(`{"score": 9}`)
	out.Parsed, out.ModelCalls = []byte(`{"score": 9}`), 2
	h.s.finish(out)
	evs := h.events()
	byItem, all := deltas(evs)
	require.Equal(t, []string{`{"score": 9}`}, all)
	require.Equal(t, map[string]string{"msg_abc": `{"score": 9}`}, byItem)
	require.Equal(t, `{"score": 9}`, evs[len(evs)-1].Response.OutputText())
}

// TestStreamStructuredWithoutRepairIsLive: with no repair possible the
// reply is the output whatever it is, so it streams live.
func TestStreamStructuredWithoutRepairIsLive(t *testing.T) {
	h := newStreamHarness(t, strings.Replace(structuredDocument, `"allow_multiple_calls": true`, `"allow_multiple_calls": false`, 1))
	h.delta(1, 1, 1, `{"score": `)
	_, all := deltas(h.events())
	require.Equal(t, []string{`{"score": `}, all)
}

// TestStreamGapIsFilledFromTheResult: a lost delta stops the live text;
// the run's result brings the rest.
func TestStreamGapIsFilledFromTheResult(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.delta(1, 1, 1, "one")
	h.delta(1, 1, 3, " three") // seq 2 was lost
	h.delta(1, 1, 4, " four")
	h.s.finish(completed("one two three four"))

	byItem, all := deltas(h.events())
	require.Equal(t, []string{"one", " two three four"}, all)
	require.Equal(t, map[string]string{"msg_abc": "one two three four"}, byItem)
}

// TestStreamWithoutEventsSendsTheResult: no event reached the gateway (a
// worker without NATS): the text comes whole when the run ends.
func TestStreamWithoutEventsSendsTheResult(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.s.finish(completed("all at once"))
	evs := h.events()
	want := append([]string{"response.created", "response.in_progress"}, textItemEvents...)
	want = append(want, "response.output_text.delta")
	want = append(want, closingEvents...)
	require.Equal(t, append(want, "response.completed"), types(evs))
	require.Equal(t, "all at once", evs[4].Delta)
}

func TestStreamFailedRun(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.delta(1, 1, 1, "Hel")
	h.s.finish(run.Turn{Status: run.StatusFailed, Model: "qwen",
		Error: &run.Error{Code: run.UpstreamUnavailable, Message: `model deployment "qwen" answered 503: overloaded`}})

	evs := h.events()
	want := append([]string{"response.created", "response.in_progress"}, textItemEvents...)
	want = append(want, "response.output_text.delta")
	want = append(want, closingEvents...)
	require.Equal(t, append(want, "response.failed"), types(evs))
	require.Equal(t, "incomplete", string(evs[7].Item.Status))
	final := evs[len(evs)-1].Response
	require.Equal(t, responses.ResponseStatusFailed, final.Status)
	require.Equal(t, run.UpstreamUnavailable, string(final.Error.Code))
	require.Empty(t, final.Output)
}

func TestStreamIncompleteRun(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.delta(1, 1, 1, "cut")
	h.s.finish(run.Turn{Status: run.StatusIncomplete, Model: "qwen", Text: "cut short"})
	evs := h.events()
	require.Equal(t, "response.incomplete", evs[len(evs)-1].Type)
	require.Equal(t, "incomplete", string(evs[len(evs)-2].Item.Status))
	_, all := deltas(evs)
	require.Equal(t, "cut short", strings.Join(all, ""))
}

func TestStreamFunctionCalls(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	out := completed("")
	out.FunctionCalls = []run.FunctionCall{{CallID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}}
	h.s.finish(out)
	evs := h.events()
	require.Equal(t, []string{
		"response.created", "response.in_progress",
		"response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
		"response.completed",
	}, types(evs))
	require.Equal(t, `{"city":"Paris"}`, evs[4].Arguments)
	require.Equal(t, "get_weather", evs[4].Name)
	final := evs[len(evs)-1].Response
	require.Len(t, final.Output, 1)
	require.Equal(t, "call_1", final.Output[0].CallID)
}

func TestStreamStopsWritingWhenTheClientIsGone(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.s.flush = func() error { return http.ErrHandlerTimeout }
	h.delta(1, 1, 1, "a")
	require.Error(t, h.s.err)
	n := h.buf.Len()
	h.delta(1, 1, 2, "b")
	require.Equal(t, n, h.buf.Len())
}

func (h *streamHarness) tool(typ string, call int, t runstream.Tool) {
	h.s.event(runstream.Event{Type: typ, Call: call, Tool: &t})
}

// item decodes the raw item of an output_item event, nulls included.
func item(t *testing.T, ev responses.ResponseStreamEventUnion) map[string]any {
	t.Helper()
	var m struct {
		Item map[string]any `json:"item"`
	}
	require.NoError(t, json.Unmarshal([]byte(ev.RawJSON()), &m))
	return m.Item
}

// requireOutputIndexes requires every item event to use the index its item
// was added at, the added items to count from 0 without a gap, and returns
// the item ids in the order they were added.
func requireOutputIndexes(t *testing.T, evs []responses.ResponseStreamEventUnion) []string {
	t.Helper()
	var ids []string
	index := map[string]int64{}
	for _, ev := range evs {
		switch {
		case ev.Type == "response.output_item.added":
			require.Equal(t, int64(len(ids)), ev.OutputIndex, "%s", ev.RawJSON())
			index[ev.Item.ID] = ev.OutputIndex
			ids = append(ids, ev.Item.ID)
		case ev.Type == "response.output_item.done":
			require.Equal(t, index[ev.Item.ID], ev.OutputIndex, "%s", ev.RawJSON())
		case ev.ItemID != "":
			require.Equal(t, index[ev.ItemID], ev.OutputIndex, "%s", ev.RawJSON())
		}
	}
	return ids
}

// TestStreamConnectionToolCalls: a connection tool call is an mcp_call
// item, added in progress when it starts and done when it ends, completed
// or failed; the reply that follows is the next item, and the result
// repeats nothing.
func TestStreamConnectionToolCalls(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.tool(runstream.TypeToolCall, 1, runstream.Tool{CallID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{"message":"hi"}`})
	h.tool(runstream.TypeToolCall, 1, runstream.Tool{CallID: "call_2", Name: "add", ServerLabel: "everything", Arguments: `{"a":1}`})
	evs := h.events()
	require.Equal(t, []string{
		"response.created", "response.in_progress",
		"response.output_item.added", "response.mcp_call.in_progress",
		"response.output_item.added", "response.mcp_call.in_progress",
	}, types(evs))
	added := item(t, evs[2])
	require.Equal(t, map[string]any{
		"type": "mcp_call", "id": "mcp_call_1", "server_label": "everything", "name": "echo", "arguments": `{"message":"hi"}`,
		"output": nil, "error": nil, "approval_request_id": nil, "status": "in_progress",
	}, added)
	require.Equal(t, "mcp_call_1", evs[3].ItemID)

	h.tool(runstream.TypeToolResult, 1, runstream.Tool{CallID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{"message":"hi"}`, Output: "Echo: hi"})
	h.tool(runstream.TypeToolResult, 1, runstream.Tool{CallID: "call_2", Name: "add", ServerLabel: "everything", Arguments: `{"a":1}`, Error: "b is required"})
	h.tool(runstream.TypeToolResult, 1, runstream.Tool{CallID: "call_2", Name: "add", ServerLabel: "everything", Arguments: `{"a":1}`, Error: "b is required"}) // the same event again adds nothing
	h.delta(2, 1, 1, "Done.")
	out := completed("Done.")
	out.ToolCalls = []run.ToolCall{
		{ID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{"message":"hi"}`, Output: "Echo: hi"},
		{ID: "call_2", Name: "add", ServerLabel: "everything", Arguments: `{"a":1}`, Error: "b is required"},
	}
	h.s.finish(out)

	evs = h.events()
	want := []string{
		"response.created", "response.in_progress",
		"response.output_item.added", "response.mcp_call.in_progress",
		"response.output_item.added", "response.mcp_call.in_progress",
		"response.mcp_call.completed", "response.output_item.done",
		"response.mcp_call.failed", "response.output_item.done",
	}
	want = append(want, textItemEvents...)
	want = append(want, "response.output_text.delta")
	want = append(want, closingEvents...)
	require.Equal(t, append(want, "response.completed"), types(evs))
	require.Equal(t, []string{"mcp_call_1", "mcp_call_2", "msg_abc"}, requireOutputIndexes(t, evs))
	done := item(t, evs[7])
	require.Equal(t, "Echo: hi", done["output"])
	require.Nil(t, done["error"])
	require.Equal(t, "completed", done["status"])
	failed := item(t, evs[9])
	require.Nil(t, failed["output"])
	require.Equal(t, "b is required", failed["error"])
	require.Equal(t, "failed", failed["status"])

	final := evs[len(evs)-1].Response
	require.Len(t, final.Output, 3)
	first := final.Output[0].AsMcpCall()
	require.Equal(t, "mcp_call_1", first.ID)
	require.Equal(t, "everything", first.ServerLabel)
	require.Equal(t, "Echo: hi", first.Output)
	require.Equal(t, "completed", first.Status)
	require.Equal(t, "failed", final.Output[1].AsMcpCall().Status)
	require.Equal(t, "b is required", final.Output[1].AsMcpCall().Error)
	require.Equal(t, "msg_abc", final.Output[2].ID)
	require.Equal(t, "Done.", final.OutputText())
}

// TestStreamToolCallsTheEventsMissed: events may be lost; the result
// streams the calls no event announced and the ends no event reported.
func TestStreamToolCallsTheEventsMissed(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.tool(runstream.TypeToolCall, 1, runstream.Tool{CallID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{}`})
	// call_1's result and everything about call_2 were lost.
	out := completed("ok")
	out.ToolCalls = []run.ToolCall{
		{ID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{}`, Output: "one"},
		{ID: "call_2", Name: "echo", ServerLabel: "everything", Arguments: `{}`, Output: "two"},
	}
	h.s.finish(out)

	evs := h.events()
	want := []string{
		"response.created", "response.in_progress",
		"response.output_item.added", "response.mcp_call.in_progress",
		"response.mcp_call.completed", "response.output_item.done",
		"response.output_item.added", "response.mcp_call.in_progress", "response.mcp_call.completed", "response.output_item.done",
	}
	want = append(want, textItemEvents...)
	want = append(want, "response.output_text.delta")
	want = append(want, closingEvents...)
	require.Equal(t, append(want, "response.completed"), types(evs))
	require.Equal(t, []string{"mcp_call_1", "mcp_call_2", "msg_abc"}, requireOutputIndexes(t, evs))
	require.Equal(t, "one", item(t, evs[5])["output"])
}

// TestStreamFunctionCallsAsTheRunReportsThem: the function calls of a
// paused turn stream as the workflow reports them; the result adds only
// those it missed, and the Response names them as streamed.
func TestStreamFunctionCallsAsTheRunReportsThem(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.tool(runstream.TypeFunctionCall, 1, runstream.Tool{CallID: "call_a", Name: "get_weather", Arguments: `{"city":"Paris"}`})
	fcEvents := []string{"response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done"}
	require.Equal(t, append([]string{"response.created", "response.in_progress"}, fcEvents...), types(h.events()), "streamed at once")

	// call_b's event was lost.
	out := completed("")
	out.Waiting = true
	out.FunctionCalls = []run.FunctionCall{
		{CallID: "call_a", Name: "get_weather", Arguments: `{"city":"Paris"}`},
		{CallID: "call_b", Name: "get_weather", Arguments: `{"city":"Oslo"}`},
	}
	h.s.finish(out)

	evs := h.events()
	want := append([]string{"response.created", "response.in_progress"}, fcEvents...)
	want = append(want, fcEvents...)
	require.Equal(t, append(want, "response.completed"), types(evs))
	require.Equal(t, []string{"fc_call_a", "fc_call_b"}, requireOutputIndexes(t, evs))
	added := item(t, evs[2])
	require.Equal(t, "in_progress", added["status"])
	require.Equal(t, "", added["arguments"])
	require.Equal(t, "call_a", added["call_id"])
	require.Equal(t, `{"city":"Paris"}`, evs[3].Delta)
	require.Equal(t, `{"city":"Paris"}`, evs[4].Arguments)
	require.Equal(t, `{"city":"Oslo"}`, evs[8].Arguments)
	require.Equal(t, "completed", item(t, evs[5])["status"])
	final := evs[len(evs)-1].Response
	require.Equal(t, responses.ResponseStatusCompleted, final.Status, "a paused turn is completed")
	require.Len(t, final.Output, 2)
	for i, id := range []string{"fc_call_a", "fc_call_b"} {
		fc := final.Output[i].AsFunctionCall()
		require.Equal(t, id, fc.ID)
		require.Equal(t, "function_call", final.Output[i].Type)
	}
}

// TestStreamTextThenFunctionCalls: the reply's text is the message item,
// its function calls the items after it.
func TestStreamTextThenFunctionCalls(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.delta(1, 1, 1, "Let me look.")
	h.tool(runstream.TypeFunctionCall, 1, runstream.Tool{CallID: "call_a", Name: "get_weather", Arguments: `{}`})
	out := completed("Let me look.")
	out.FunctionCalls = []run.FunctionCall{{CallID: "call_a", Name: "get_weather", Arguments: `{}`}}
	h.s.finish(out)
	evs := h.events()
	require.Equal(t, []string{"msg_abc", "fc_call_a"}, requireOutputIndexes(t, evs))
	final := evs[len(evs)-1].Response
	require.Equal(t, []string{"msg_abc", "fc_call_a"}, []string{final.Output[0].ID, final.Output[1].ID})
	_, all := deltas(evs)
	require.Equal(t, []string{"Let me look."}, all)
}

// TestStreamApprovalRequests: a call waiting for approval is an
// mcp_approval_request item, added and done at once, and not again from
// the result.
func TestStreamApprovalRequests(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.tool(runstream.TypeApprovalRequest, 1, runstream.Tool{ID: "mcpr_call_1", CallID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{"message":"hi"}`})
	out := completed("")
	out.Waiting = true
	out.ApprovalRequests = []run.ApprovalRequest{
		{ID: "mcpr_call_1", CallID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{"message":"hi"}`},
		{ID: "mcpr_call_2", CallID: "call_2", Name: "add", ServerLabel: "everything", Arguments: `{}`},
	}
	h.s.finish(out)

	evs := h.events()
	require.Equal(t, []string{
		"response.created", "response.in_progress",
		"response.output_item.added", "response.output_item.done",
		"response.output_item.added", "response.output_item.done",
		"response.completed",
	}, types(evs))
	require.Equal(t, []string{"mcpr_call_1", "mcpr_call_2"}, requireOutputIndexes(t, evs))
	require.Equal(t, map[string]any{"type": "mcp_approval_request", "id": "mcpr_call_1", "server_label": "everything", "name": "echo", "arguments": `{"message":"hi"}`}, item(t, evs[3]))
	final := evs[len(evs)-1].Response
	require.Equal(t, responses.ResponseStatusCompleted, final.Status)
	require.Len(t, final.Output, 2)
	req := final.Output[0].AsMcpApprovalRequest()
	require.Equal(t, "mcpr_call_1", req.ID)
	require.Equal(t, "echo", req.Name)
	require.Equal(t, "everything", req.ServerLabel)
}

// TestStreamContinuedTurn: the stream of a continue is the next turn's:
// its response id, the response it continues, its message id; the calls
// the continue approved run first and name their approval request.
func TestStreamContinuedTurn(t *testing.T) {
	h := &streamHarness{t: t}
	d, err := prompt.Parse([]byte(textDocument))
	require.NoError(t, err)
	in := run.Input{ResponseID: "resp_abc", Deployment: "p", PromptVersion: 1, Document: []byte(textDocument)}
	head := run.Turn{ResponseID: "resp_abc_2", Turn: 2, PreviousResponseID: "resp_abc"}
	h.s = newResponseStream(&h.buf, func() error { return nil }, in, &version{raw: []byte(textDocument), doc: d}, head, time.Unix(1700000000, 0))
	h.s.start()

	evs := h.events()
	require.Equal(t, "resp_abc_2", evs[0].Response.ID)
	require.Equal(t, "resp_abc", evs[0].Response.PreviousResponseID)
	require.Equal(t, responses.ResponseStatusInProgress, evs[0].Response.Status)

	h.tool(runstream.TypeToolCall, 3, runstream.Tool{CallID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{}`, ApprovalRequestID: "mcpr_call_1"})
	h.tool(runstream.TypeToolResult, 3, runstream.Tool{CallID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{}`, Output: "hi", ApprovalRequestID: "mcpr_call_1"})
	h.delta(4, 1, 1, "All done.")
	approved := true
	h.s.finish(run.Turn{
		ResponseID: "resp_abc_2", Turn: 2, PreviousResponseID: "resp_abc", Status: run.StatusCompleted, Model: "qwen", Text: "All done.",
		ToolCalls: []run.ToolCall{{ID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{}`, Output: "hi", ApprovalRequestID: "mcpr_call_1", Approved: &approved}},
	})

	evs = h.events()
	require.Equal(t, []string{"mcp_call_1", "msg_abc_2"}, requireOutputIndexes(t, evs))
	require.Equal(t, "mcpr_call_1", item(t, evs[2])["approval_request_id"])
	require.Equal(t, "mcpr_call_1", item(t, evs[5])["approval_request_id"])
	final := evs[len(evs)-1].Response
	require.Equal(t, "resp_abc_2", final.ID)
	require.Equal(t, "resp_abc", final.PreviousResponseID)
	require.Equal(t, "mcpr_call_1", final.Output[0].AsMcpCall().ApprovalRequestID)
	require.Equal(t, "msg_abc_2", final.Output[1].ID)
	require.Equal(t, "All done.", final.OutputText())
}

// TestStreamToolCallOfAFailedRun: a call whose run failed before it ended
// is closed incomplete; the Response has no item for it.
func TestStreamToolCallOfAFailedRun(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.tool(runstream.TypeToolCall, 1, runstream.Tool{CallID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{}`})
	h.s.finish(run.Turn{Status: run.StatusFailed, Error: &run.Error{Code: "server_error", Message: "The run failed."}})
	evs := h.events()
	require.Equal(t, []string{
		"response.created", "response.in_progress",
		"response.output_item.added", "response.mcp_call.in_progress", "response.output_item.done",
		"response.failed",
	}, types(evs))
	require.Equal(t, "incomplete", item(t, evs[4])["status"])
	require.Empty(t, evs[len(evs)-1].Response.Output)
	require.Equal(t, "resp_abc", evs[len(evs)-1].Response.ID)
}

// TestAwaitFirstTurn: the announced turn is the answer; an announcement
// that never comes, or cannot be read, leaves the answer to the update.
func TestAwaitFirstTurn(t *testing.T) {
	nc := runstreamtest.Connect(t, runstreamtest.Start(t))
	f := &firstTurn{announceWait: 200 * time.Millisecond}

	asked := 0
	wait := func() (run.Turn, error) {
		asked++
		return run.Turn{ResponseID: "resp_a", Text: "from the update"}, nil
	}
	const key = "test-event-key"
	subscribe := func(id string) *runstream.Subscription {
		sub, err := runstream.Subscribe(nc, id, key)
		require.NoError(t, err)
		t.Cleanup(func() { _ = sub.Close() })
		return sub
	}

	sub := subscribe("resp_a")
	require.NoError(t, runstream.Publish(t.Context(), nc, runstream.Subject("resp_a"), key, runstream.Event{Type: runstream.TypeDelta, Text: "x"}))
	require.NoError(t, runstream.Publish(t.Context(), nc, runstream.Subject("resp_a"), key,
		runstream.Event{Type: runstream.TypeTurnEnded, Output: []byte(`{"response_id":"resp_a","text":"announced"}`)}))
	out, err := f.await(t.Context(), sub, wait)
	require.NoError(t, err)
	require.Equal(t, "announced", out.Text)
	require.Zero(t, asked, "no update when the turn was announced")

	start := time.Now()
	out, err = f.await(t.Context(), subscribe("resp_b"), wait)
	require.NoError(t, err)
	require.Equal(t, "from the update", out.Text)
	require.Equal(t, 1, asked)
	require.GreaterOrEqual(t, time.Since(start), f.announceWait)

	sub = subscribe("resp_c")
	require.NoError(t, runstream.Publish(t.Context(), nc, runstream.Subject("resp_c"), key,
		runstream.Event{Type: runstream.TypeTurnEnded, Output: []byte(`"not a turn"`)}))
	out, err = f.await(t.Context(), sub, wait)
	require.NoError(t, err)
	require.Equal(t, "from the update", out.Text)
	require.Equal(t, 2, asked)

	out, err = f.await(t.Context(), nil, wait)
	require.NoError(t, err)
	require.Equal(t, "from the update", out.Text, "without NATS the update answers")
}

// TestAwaitFirstTurnIgnoresForgedAnnouncements: the gateway takes as the
// run's answer only an announcement signed with the key it gave the run:
// a turn_ended that someone else publishes on the run's subject, unsigned
// or signed with a key of their own, is dropped, and the run's own is
// the answer.
func TestAwaitFirstTurnIgnoresForgedAnnouncements(t *testing.T) {
	srv := runstreamtest.Start(t)
	rc, err := runs.New(nil, runs.StartThenUpdate)
	require.NoError(t, err)
	f := &firstTurn{nats: runstreamtest.Connect(t, srv), runs: rc, announceWait: time.Minute}

	in := run.Input{ResponseID: "resp_forged"}
	sub := f.subscribe(&in)
	require.NotNil(t, sub)
	defer func() { _ = sub.Close() }()
	require.Equal(t, runstream.Subject(in.ResponseID), in.TurnSubject)
	require.NotEmpty(t, in.EventKey, "the run is given the key its announcement must be signed with")

	forger := runstreamtest.Connect(t, srv)
	forged := runstream.Event{Type: runstream.TypeTurnEnded, Output: []byte(`{"response_id":"resp_forged","text":"forged"}`)}
	require.NoError(t, runstream.Publish(t.Context(), forger, in.TurnSubject, "", forged))
	require.NoError(t, runstream.Publish(t.Context(), forger, in.TurnSubject, runstream.NewEventKey(), forged))
	// The worker, which has the key from the run's input.
	worker := runstreamtest.Connect(t, srv)
	require.NoError(t, runstream.Publish(t.Context(), worker, in.TurnSubject, in.EventKey,
		runstream.Event{Type: runstream.TypeTurnEnded, Output: []byte(`{"response_id":"resp_forged","text":"real"}`)}))

	out, err := f.await(t.Context(), sub, func() (run.Turn, error) {
		return run.Turn{}, errors.New("the update is not asked: the run announced its turn")
	})
	require.NoError(t, err)
	require.Equal(t, "real", out.Text)
	require.Equal(t, int64(2), sub.Dropped())
}

// BenchmarkResponseStream measures the Responses events of one streamed
// turn: the opening events, a connection tool call, 20 text deltas and the
// closing events with the final Response.
func BenchmarkResponseStream(b *testing.B) {
	d, err := prompt.Parse([]byte(textDocument))
	require.NoError(b, err)
	c, err := prompt.Compile(d)
	require.NoError(b, err)
	v := &version{raw: []byte(textDocument), doc: d, compiled: c}
	in := run.Input{ResponseID: "resp_abc", Deployment: "p", PromptVersion: 1, Document: []byte(textDocument), Variables: map[string]any{"input": "hi"}}
	tool := runstream.Tool{CallID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{"message":"hi"}`, Output: "Echo: hi"}
	words := make([]string, 20)
	for i := range words {
		words[i] = "word" + strconv.Itoa(i) + " "
	}
	out := run.Turn{Status: run.StatusCompleted, Model: "qwen", ModelCalls: 2, Text: strings.Join(words, ""),
		ToolCalls: []run.ToolCall{{ID: "call_1", Name: "echo", ServerLabel: "everything", Arguments: `{"message":"hi"}`, Output: "Echo: hi"}}}
	b.ReportAllocs()
	for b.Loop() {
		s := newResponseStream(io.Discard, func() error { return nil }, in, v, run.Turn{ResponseID: "resp_abc", Turn: 1}, time.Unix(1700000000, 0))
		s.start()
		s.event(runstream.Event{Type: runstream.TypeToolCall, Call: 1, Tool: &tool})
		s.event(runstream.Event{Type: runstream.TypeToolResult, Call: 1, Tool: &tool})
		for i, w := range words {
			s.event(runstream.Event{Type: runstream.TypeDelta, Call: 2, Attempt: 1, Seq: i + 1, Text: w})
		}
		s.finish(out)
	}
}
