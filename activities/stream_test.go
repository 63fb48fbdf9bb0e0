package activities_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/runstream/runstreamtest"
	"github.com/budhq/bud/upstreamtest"
	"github.com/budhq/bud/workflows"
)

// streamKey is the event key of run "resp_s": the subscription of
// streaming takes only events signed with it.
const streamKey = "resp_s-event-key"

// streaming is a bundle whose activities publish to an embedded NATS
// server, and a subscription to run "resp_s".
func streaming(t *testing.T) (*bundle, *runstream.Subscription) {
	t.Helper()
	b := setup(t)
	srv := runstreamtest.Start(t)
	b.acts = activities.New(activities.Config{Identity: "test", Pool: b.pool, Box: b.box, NATS: runstreamtest.Connect(t, srv)})
	b.env = newActivityEnv(b.acts)
	sub, err := runstream.Subscribe(runstreamtest.Connect(t, srv), "resp_s", streamKey)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	return b, sub
}

type received struct {
	ev runstream.Event
	at time.Time
}

// TestCallModelStreamPublishesDeltasAsTheyArrive streams a slow reply and
// checks that its pieces reach a subscriber while the call is still
// running, tagged with the call and attempt, and that the result is the
// one a whole reply would give.
func TestCallModelStreamPublishesDeltasAsTheyArrive(t *testing.T) {
	t.Parallel()
	b, sub := streaming(t)
	const content = "one two three four five six"
	const chunkDelay = 40 * time.Millisecond
	b.upstream.Script(upstreamtest.Text(content).WithChunkDelay(chunkDelay).WithUsage(upstreamtest.Usage{PromptTokens: 9, CompletionTokens: 6}))

	got := make(chan []received, 1)
	go func() {
		var evs []received
		for {
			select {
			case ev := <-sub.Events():
				evs = append(evs, received{ev, time.Now()})
				if ev.Type == runstream.TypeCallDone {
					got <- evs
					return
				}
			case <-time.After(10 * time.Second):
				got <- evs
				return
			}
		}
	}()
	res, err := b.callModel(t, activities.CallModelInput{Stream: true, StreamSubject: runstream.Subject("resp_s"), EventKey: streamKey, Call: 2})
	returned := time.Now()
	require.NoError(t, err)

	require.Equal(t, content, res.Content)
	require.Equal(t, "stop", res.FinishReason)
	require.Equal(t, chat.Usage{PromptTokens: 9, CompletionTokens: 6, TotalTokens: 15}, res.Usage, "usage comes from the stream's last chunk")
	require.Equal(t, upstreamModel, res.Model)
	require.Equal(t, int32(1), res.Attempt)

	evs := <-got
	require.NotEmpty(t, evs)
	var text strings.Builder
	for i, r := range evs[:len(evs)-1] {
		require.Equal(t, runstream.TypeDelta, r.ev.Type)
		require.Equal(t, 2, r.ev.Call)
		require.Equal(t, int32(1), r.ev.Attempt)
		require.Equal(t, i+1, r.ev.Seq)
		text.WriteString(r.ev.Text)
	}
	require.Equal(t, content, text.String())
	require.Len(t, evs, 7, "one delta per word, then call_done")
	require.Equal(t, runstream.Event{Type: runstream.TypeCallDone, Call: 2, Attempt: 1, Seq: 7, FinishReason: "stop"}, evs[6].ev)
	// The stand-in pauses before each of the five later words: the first
	// delta must have arrived well before the call returned.
	require.Less(t, evs[0].at, returned.Add(-4*chunkDelay), "the first delta arrives while the model is still answering")

	r := b.upstream.Requests()[0]
	require.Equal(t, true, r.JSON["stream"])
	require.Equal(t, map[string]any{"include_usage": true}, r.JSON["stream_options"])
	require.Equal(t, "text/event-stream", r.Header.Get("Accept"))
}

func TestCallModelStreamReturnsToolCalls(t *testing.T) {
	t.Parallel()
	b, _ := streaming(t)
	b.upstream.Script(upstreamtest.Reply{Content: "Checking.", ToolCalls: []upstreamtest.ToolCall{
		{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`},
		{ID: "call_2", Name: "get_time", Arguments: `{"tz":"Europe/Paris"}`},
	}})

	res, err := b.callModel(t, activities.CallModelInput{Stream: true, StreamSubject: runstream.Subject("resp_s"), EventKey: streamKey, Call: 1})

	require.NoError(t, err)
	require.Equal(t, "Checking.", res.Content)
	require.Equal(t, "tool_calls", res.FinishReason)
	require.Equal(t, []chat.ToolCall{
		{ID: "call_1", Type: "function", Function: chat.ToolCallFunction{Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`}},
		{ID: "call_2", Type: "function", Function: chat.ToolCallFunction{Name: "get_time", Arguments: `{"tz":"Europe/Paris"}`}},
	}, res.ToolCalls)
}

// TestCallModelStreamThatBreaksOffIsRetryable: a stream cut before the
// model finished fails the attempt, retryably; what it published stays
// tagged with its attempt, for the gateway to supersede.
func TestCallModelStreamThatBreaksOffIsRetryable(t *testing.T) {
	t.Parallel()
	b, sub := streaming(t)
	b.upstream.Script(upstreamtest.Text("alpha beta gamma delta").WithDropAfter(3))

	_, err := b.callModel(t, activities.CallModelInput{Stream: true, StreamSubject: runstream.Subject("resp_s"), EventKey: streamKey, Call: 1})

	appErr, f := appError(t, err)
	require.Equal(t, run.UpstreamUnavailable, appErr.Type())
	require.False(t, appErr.NonRetryable())
	require.Equal(t, "the model deployment's stream broke off", f.Message)
	evs, err := sub.Flush(t.Context())
	require.NoError(t, err)
	require.Equal(t, []runstream.Event{
		{Type: runstream.TypeDelta, Call: 1, Attempt: 1, Seq: 1, Text: "alpha"},
		{Type: runstream.TypeDelta, Call: 1, Attempt: 1, Seq: 2, Text: " beta"},
	}, evs, "no call_done for an attempt that failed")
}

func TestCallModelStreamErrorBeforeTheStreamIsTheUsualFailure(t *testing.T) {
	t.Parallel()
	b, _ := streaming(t)
	b.upstream.Script(upstreamtest.Error(400, "invalid_request_error", "Invalid 'temperature'."))

	_, err := b.callModel(t, activities.CallModelInput{Stream: true, StreamSubject: runstream.Subject("resp_s"), EventKey: streamKey, Call: 1})

	appErr, f := appError(t, err)
	require.Equal(t, run.UpstreamRejected, appErr.Type())
	require.Equal(t, run.Failure{Status: 400, Message: "Invalid 'temperature'."}, f)
}

// TestCallModelStreamWithoutNATS: a worker without NATS still streams
// from the model and returns the whole reply.
func TestCallModelStreamWithoutNATS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.upstream.Script(upstreamtest.Text("no one listens"))

	res, err := b.callModel(t, activities.CallModelInput{Stream: true, StreamSubject: runstream.Subject("resp_s"), EventKey: streamKey, Call: 1})

	require.NoError(t, err)
	require.Equal(t, "no one listens", res.Content)
	require.Equal(t, true, b.upstream.Requests()[0].JSON["stream"])
}

// TestRecordRunAnnouncesTheTurnAfterTheRow: with a TurnSubject, RecordRun
// publishes the turn once the row is written, so a caller that reads the
// runs table on hearing of it finds the run.
func TestRecordRunAnnouncesTheTurnAfterTheRow(t *testing.T) {
	t.Parallel()
	b, sub := streaming(t)
	rec := runRecord(b, "resp_s")
	rec.TurnSubject, rec.EventKey = runstream.Subject("resp_s"), streamKey
	rec.Turn = []byte(`{"response_id":"resp_s","turn":1,"text":"Hi"}`)

	require.NoError(t, b.recordRun(t, rec))

	select {
	case ev := <-sub.Events():
		require.Equal(t, runstream.TypeTurnEnded, ev.Type)
		require.JSONEq(t, string(rec.Turn), string(ev.Output))
	case <-time.After(5 * time.Second):
		t.Fatal("no turn_ended event")
	}
	_, err := b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: b.project, ID: "resp_s"})
	require.NoError(t, err, "the row was written before the announcement")

	// Without a subject, nothing is published.
	rec.ID, rec.TurnSubject = "resp_s2", ""
	require.NoError(t, b.recordRun(t, rec))
	evs, err := sub.Flush(t.Context())
	require.NoError(t, err)
	require.Empty(t, evs)
}

// announcement lets a call end run id's first turn, with the row as the
// workflow has it before the call; it is announced on run "resp_s".
func announcement(b *bundle, id string) *activities.Announcement {
	rec := runRecord(b, id)
	rec.Status, rec.Output, rec.ModelCalls, rec.RenderedMessages = "", nil, nil, nil
	rec.InputTokens, rec.OutputTokens = 0, 0
	return &activities.Announcement{Subject: runstream.Subject("resp_s"), EventKey: streamKey, Record: rec,
		Turn: []byte(`{"response_id":"` + id + `","turn":1,"status":"","model":"qwen","text":"","usage":{"input_tokens":0,"output_tokens":0,"total_tokens":0},"model_calls":0,"started_at":"2026-03-01T12:00:00Z","finished_at":"0001-01-01T00:00:00Z"}`)}
}

// recordedEarlier writes run id's row as a call that ended its first turn
// with "Hello, Ada." did, and returns that reply.
func recordedEarlier(t *testing.T, b *bundle, id string) (activities.CallModelResult, []chat.Message) {
	t.Helper()
	sent := activities.CallModelResult{Content: "Hello, Ada.", FinishReason: "stop", Usage: chat.Usage{PromptTokens: 9, CompletionTokens: 3, TotalTokens: 12},
		LatencyMS: 12, Model: upstreamModel, Attempt: 1, Recorded: true}
	msgs := []chat.Message{{Role: "user", Content: "Greet Ada."}}
	rec, err := announcement(b, id).RunRecord(msgs, sent, run.StatusCompleted, time.Now())
	require.NoError(t, err)
	require.NoError(t, b.recordRun(t, rec))
	return sent, msgs
}

// retryingEnv runs CallModel as a workflow would, with two attempts.
func retryingEnv(b *bundle) *testsuite.TestWorkflowEnvironment {
	var ts testsuite.WorkflowTestSuite
	ts.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := ts.NewTestWorkflowEnvironment()
	env.RegisterActivity(b.acts)
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in activities.CallModelInput) (activities.CallModelResult, error) {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute,
			RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Millisecond, MaximumAttempts: 2}})
		var res activities.CallModelResult
		err := workflow.ExecuteActivity(ctx, "CallModel", in).Get(ctx, &res)
		return res, err
	}, workflow.RegisterOptions{Name: "call"})
	return env
}

// TestCallModelEndsTheFirstTurnItself: with an Announcement, a reply that
// ends the turn is written to the run's row first and then announced with
// the turn; a reply that calls tools is neither.
func TestCallModelEndsTheFirstTurnItself(t *testing.T) {
	t.Parallel()
	b, sub := streaming(t)
	b.upstream.Script(upstreamtest.Text("Hi Ada.").WithUsage(upstreamtest.Usage{PromptTokens: 9, CompletionTokens: 3}))
	msgs := []chat.Message{{Role: "user", Content: "Greet Ada."}}
	type seen struct {
		ev  runstream.Event
		row error // reading the row as the event arrived
	}
	got := make(chan seen, 1)
	go func() {
		select {
		case ev := <-sub.Events():
			_, err := b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: b.project, ID: "resp_s"})
			got <- seen{ev, err}
		case <-time.After(5 * time.Second):
			close(got)
		}
	}()

	res, err := b.callModel(t, activities.CallModelInput{Messages: msgs, Announce: announcement(b, "resp_s")})
	require.NoError(t, err)
	require.True(t, res.Recorded)

	s, ok := <-got
	require.True(t, ok, "no turn_ended event")
	require.NoError(t, s.row, "the row was written before the announcement")
	turn, ok := workflows.AnnouncedTurn(s.ev)
	require.True(t, ok, "a turn_ended with the reply: %+v", s.ev)
	require.Equal(t, "resp_s", turn.ResponseID)
	require.Equal(t, run.StatusCompleted, turn.Status)
	require.Equal(t, "Hi Ada.", turn.Text)
	require.Equal(t, 1, turn.ModelCalls)
	require.Equal(t, run.Usage{InputTokens: 9, OutputTokens: 3, TotalTokens: 12}, turn.Usage)
	row, err := b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: b.project, ID: "resp_s"})
	require.NoError(t, err)
	require.Equal(t, run.StatusCompleted, row.Status)
	require.JSONEq(t, `{"text": "Hi Ada."}`, string(row.Output))
	require.JSONEq(t, `[{"role": "user", "content": "Greet Ada."}]`, string(row.RenderedMessages))
	var calls []activities.ModelCall
	require.NoError(t, json.Unmarshal(row.ModelCalls, &calls))
	require.Len(t, calls, 1)
	require.Equal(t, int64(9), row.InputTokens)

	// A reply that calls tools leaves the run to the workflow.
	b.upstream.Script(upstreamtest.ToolCalls(upstreamtest.Call("get_weather", `{}`)))
	res, err = b.callModel(t, activities.CallModelInput{Messages: msgs, Announce: announcement(b, "resp_s3")})
	require.NoError(t, err)
	require.False(t, res.Recorded)
	_, err = b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: b.project, ID: "resp_s3"})
	require.True(t, db.IsNoRows(err), "no row: %v", err)
	evs, err := sub.Flush(t.Context())
	require.NoError(t, err)
	require.Empty(t, evs)
}

// TestStreamedCallEndsTheTurnAfterItsDeltas: a streamed first call that
// ends the turn announces it after its deltas and its call_done.
func TestStreamedCallEndsTheTurnAfterItsDeltas(t *testing.T) {
	t.Parallel()
	b, sub := streaming(t)
	b.upstream.Script(upstreamtest.Text("one two three"))

	res, err := b.callModel(t, activities.CallModelInput{Messages: []chat.Message{{Role: "user", Content: "Count."}},
		Stream: true, StreamSubject: runstream.Subject("resp_s"), EventKey: streamKey, Call: 1, Announce: announcement(b, "resp_s")})
	require.NoError(t, err)
	require.True(t, res.Recorded)

	evs, err := sub.Flush(t.Context())
	require.NoError(t, err)
	var types []string
	var text strings.Builder
	for _, ev := range evs {
		if len(types) == 0 || types[len(types)-1] != ev.Type {
			types = append(types, ev.Type)
		}
		if ev.Type == runstream.TypeDelta {
			text.WriteString(ev.Text)
		}
	}
	require.Equal(t, []string{runstream.TypeDelta, runstream.TypeCallDone, runstream.TypeTurnEnded}, types)
	require.Equal(t, "one two three", text.String())
	turn, ok := workflows.AnnouncedTurn(evs[len(evs)-1])
	require.True(t, ok)
	require.Equal(t, "one two three", turn.Text)
}

// TestRetriedCallKeepsTheReplyThatEndedTheTurn: an attempt that finds the
// row an earlier attempt wrote with its reply (its worker died after
// writing it) returns that reply, announces it again in case the caller
// missed it, and does not call the model.
func TestRetriedCallKeepsTheReplyThatEndedTheTurn(t *testing.T) {
	t.Parallel()
	b, sub := streaming(t)
	sent, msgs := recordedEarlier(t, b, "resp_r")
	// The first attempt seen here fails; the retry finds the row.
	b.upstream.Script(upstreamtest.Error(503, "server_error", "busy"))
	env := retryingEnv(b)

	env.ExecuteWorkflow("call", activities.CallModelInput{ProjectID: b.project, Deployment: "qwen", Messages: msgs, Announce: announcement(b, "resp_r")})
	require.NoError(t, env.GetWorkflowError())
	var res activities.CallModelResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, sent, res)
	require.Equal(t, 1, b.upstream.Received(), "the retry did not call the model again")
	evs, err := sub.Flush(t.Context())
	require.NoError(t, err)
	require.Len(t, evs, 1)
	turn, ok := workflows.AnnouncedTurn(evs[0])
	require.True(t, ok)
	require.Equal(t, "Hello, Ada.", turn.Text)
}

// TestFailedRetryYieldsToTheReplyThatEndedTheTurn: an attempt whose own
// call fails while an earlier attempt, which outlived its timeout, ends
// the turn returns that attempt's reply instead of the failure.
func TestFailedRetryYieldsToTheReplyThatEndedTheTurn(t *testing.T) {
	t.Parallel()
	b, _ := streaming(t)
	b.upstream.Script(upstreamtest.Error(503, "server_error", "busy"),
		upstreamtest.Error(400, "invalid_request_error", "no").WithDelay(300*time.Millisecond))
	done := make(chan activities.CallModelResult, 1)
	go func() {
		// The earlier attempt writes the row while the retry's call is
		// under way.
		_, _ = b.upstream.WaitRequests(t.Context(), 2)
		sent, _ := recordedEarlier(t, b, "resp_f")
		done <- sent
	}()
	env := retryingEnv(b)

	env.ExecuteWorkflow("call", activities.CallModelInput{ProjectID: b.project, Deployment: "qwen",
		Messages: []chat.Message{{Role: "user", Content: "Greet Ada."}}, Announce: announcement(b, "resp_f")})
	require.NoError(t, env.GetWorkflowError(), "the 400 gave way to the recorded reply")
	var res activities.CallModelResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, <-done, res)
}

// TestSecondWriterYieldsToTheReplyThatEndedTheTurn: two attempts of the
// first call ran at once (the first outlived its timeout); the one whose
// row is there first ended the run, and the other returns that reply, does
// not announce its own and leaves the row as it was.
func TestSecondWriterYieldsToTheReplyThatEndedTheTurn(t *testing.T) {
	t.Parallel()
	b, sub := streaming(t)
	sent, msgs := recordedEarlier(t, b, "resp_s")
	b.upstream.Script(upstreamtest.Text("Hi there, Ada!"))

	res, err := b.callModel(t, activities.CallModelInput{Messages: msgs, Announce: announcement(b, "resp_s")})
	require.NoError(t, err)
	require.Equal(t, sent, res, "the reply whose row was there first")
	require.Equal(t, 1, b.upstream.Received())
	row, err := b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: b.project, ID: "resp_s"})
	require.NoError(t, err)
	require.JSONEq(t, `{"text": "Hello, Ada."}`, string(row.Output), "the row is left as it was")
	evs, err := sub.Flush(t.Context())
	require.NoError(t, err)
	require.Empty(t, evs, "nothing more is announced")
}

// TestCallModelChecksAStructuredReplyBeforeEndingTheTurn: with the
// document, a valid structured reply ends the turn with its parsed value;
// an invalid one is left to the workflow to repair.
func TestCallModelChecksAStructuredReplyBeforeEndingTheTurn(t *testing.T) {
	t.Parallel()
	b, sub := streaming(t)
	doc := []byte(`{"deployment": "qwen", "messages": [{"role": "user", "content": "Score it."}],
	  "output": {"type": "structured", "variables": [{"name": "score", "type": "integer", "required": true}]}}`)
	msgs := []chat.Message{{Role: "user", Content: "Score it."}}
	an := announcement(b, "resp_s")
	an.Document = doc
	b.upstream.Script(upstreamtest.JSONContent(map[string]any{"score": 9}))

	res, err := b.callModel(t, activities.CallModelInput{Messages: msgs, Announce: an})
	require.NoError(t, err)
	require.True(t, res.Recorded)
	require.JSONEq(t, `{"score": 9}`, string(res.Parsed))
	row, err := b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: b.project, ID: "resp_s"})
	require.NoError(t, err)
	require.JSONEq(t, `{"text": "{\"score\":9}", "parsed": {"score": 9}}`, string(row.Output))
	evs, err := sub.Flush(t.Context())
	require.NoError(t, err)
	require.Len(t, evs, 1)
	turn, ok := workflows.AnnouncedTurn(evs[0])
	require.True(t, ok)
	require.JSONEq(t, `{"score": 9}`, string(turn.Parsed))

	an = announcement(b, "resp_s4")
	an.Document = doc
	b.upstream.Script(upstreamtest.JSONContent(map[string]any{"score": "nine"}))
	res, err = b.callModel(t, activities.CallModelInput{Messages: msgs, Announce: an})
	require.NoError(t, err)
	require.False(t, res.Recorded, "an invalid reply is the workflow's to repair")
	require.Nil(t, res.Parsed)
	_, err = b.q.GetRun(t.Context(), dbsqlc.GetRunParams{ProjectID: b.project, ID: "resp_s4"})
	require.True(t, db.IsNoRows(err), "no row: %v", err)
	evs, err = sub.Flush(t.Context())
	require.NoError(t, err)
	require.Empty(t, evs)
}
