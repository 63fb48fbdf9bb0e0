package gateway

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/workflows"
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
	in := workflows.PromptRunInput{ResponseID: "resp_abc", Deployment: "p", PromptVersion: 1, Document: []byte(doc)}
	h.s = newResponseStream(&h.buf, func() error { return nil }, in, &version{raw: []byte(doc), doc: d, compiled: c}, workflows.PromptRunOutput{ResponseID: "resp_abc", Turn: 1}, time.Unix(1700000000, 0))
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

func completed(text string) workflows.PromptRunOutput {
	return workflows.PromptRunOutput{Status: workflows.StatusCompleted, Model: "qwen", Text: text, ModelCalls: 1}
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
	h.s.finish(workflows.PromptRunOutput{Status: workflows.StatusFailed, Model: "qwen",
		Error: &workflows.RunError{Code: workflows.ErrUpstreamUnavailable, Message: `model deployment "qwen" answered 503: overloaded`}})

	evs := h.events()
	want := append([]string{"response.created", "response.in_progress"}, textItemEvents...)
	want = append(want, "response.output_text.delta")
	want = append(want, closingEvents...)
	require.Equal(t, append(want, "response.failed"), types(evs))
	require.Equal(t, "incomplete", string(evs[7].Item.Status))
	final := evs[len(evs)-1].Response
	require.Equal(t, responses.ResponseStatusFailed, final.Status)
	require.Equal(t, workflows.ErrUpstreamUnavailable, string(final.Error.Code))
	require.Empty(t, final.Output)
}

func TestStreamIncompleteRun(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	h.delta(1, 1, 1, "cut")
	h.s.finish(workflows.PromptRunOutput{Status: workflows.StatusIncomplete, Model: "qwen", Text: "cut short"})
	evs := h.events()
	require.Equal(t, "response.incomplete", evs[len(evs)-1].Type)
	require.Equal(t, "incomplete", string(evs[len(evs)-2].Item.Status))
	_, all := deltas(evs)
	require.Equal(t, "cut short", strings.Join(all, ""))
}

func TestStreamFunctionCalls(t *testing.T) {
	h := newStreamHarness(t, textDocument)
	out := completed("")
	out.FunctionCalls = []workflows.FunctionCall{{CallID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}}
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
