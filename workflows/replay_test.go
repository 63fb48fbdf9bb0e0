package workflows_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/workflows"
)

var update = flag.Bool("update", false, "rewrite the histories in testdata from real runs of PromptRun")

// recordedRun is one kind of history PromptRun writes: its name, the file
// in testdata that holds it, and the real run that makes it, which checks
// its outcome and returns the run's workflow id.
type recordedRun struct {
	name string
	file string
	run  func(r *rig, t *testing.T) string
}

// recordedRuns are the histories TestPromptRunReplaysEveryHistory holds
// PromptRun to, one for each way a run can go.
func recordedRuns() []recordedRun {
	return []recordedRun{
		// A structured prompt whose first reply fails validation and is
		// repaired by the second.
		{"structured repair", "promptrun_history.json", (*rig).structuredRepair},
		// A text run whose first model call ends the run and records it
		// itself (TurnSubject: the announcement).
		{"announced", "promptrun_announced.json", (*rig).announced},
		// A connection tool the model calls, run by CallTool, its result
		// fed back to a second model call.
		{"tool call", "promptrun_tool_call.json", (*rig).toolCall},
		// Two connection tool calls that need approval: the run pauses, one
		// is approved with UpdateApprove, the other rejected by a continue's
		// mcp_approval_response, and the run finishes.
		{"approval", "promptrun_approval.json", (*rig).approval},
		// A call of the caller's function tool: the run pauses and is
		// continued with its function_call_output.
		{"function continue", "promptrun_function_continue.json", (*rig).functionContinue},
		// A streamed structured run (StreamSubject and TurnSubject, as the
		// gateway streams): a connection tool call, a rejected reply and its
		// repair, each step published.
		{"streamed", "promptrun_streamed.json", (*rig).streamed},
		// A run as an evaluation starts it (Batch, EndAtPause): its model
		// calls are local activities, a connection tool call between them
		// an activity.
		{"batch", "promptrun_batch.json", (*rig).batch},
		// An evaluation of three rows against one candidate, two runs at a
		// time: each a child run, the finished ones scored in batches.
		{"evaluation", "evaluation.json", (*rig).evaluation},
	}
}

// TestPromptRunReplaysEveryHistory replays each recorded history against
// today's PromptRun. The worker re-executes the workflow code over the
// recorded events and requires every command it issues — each activity,
// local activity and timer, in order, with its type — to match them. A
// change that breaks determinism (another step, another order, a step made
// conditional on something the history did not decide) fails here; such a
// change would fail every run in flight when workers are upgraded, and
// needs workflow.GetVersion around it. Regenerate the files with -update
// only for a change made compatible that way, never to make this test pass.
func TestPromptRunReplaysEveryHistory(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	var want []string
	for _, rr := range recordedRuns() {
		want = append(want, filepath.Join("testdata", rr.file))
	}
	require.ElementsMatch(t, want, files, "every history in testdata is made by TestPromptRunEndToEnd")

	for _, rr := range recordedRuns() {
		t.Run(rr.name, func(t *testing.T) {
			t.Parallel()
			require.NoError(t, replayer().ReplayWorkflowHistoryFromJSONFile(quietLogger(), filepath.Join("testdata", rr.file)))
		})
	}
}

// TestPromptRunEndToEnd makes each recordedRun for real on an embedded
// Temporal server with a worker, Postgres, NATS, the upstream stand-in and
// an HTTP connection, checks its outcome, and replays the history it made.
// With -update it saves each history in testdata:
//
//	go test ./workflows/ -run TestPromptRunEndToEnd -update
func TestPromptRunEndToEnd(t *testing.T) {
	r := newRig(t)
	t.Run("runs", func(t *testing.T) {
		for _, rr := range recordedRuns() {
			t.Run(rr.name, func(t *testing.T) {
				t.Parallel()
				id := rr.run(r, t)
				hist := history(r.ctx, t, r.c, id)
				// The text form shows payloads as they are, not base64.
				require.NotContains(t, hist.String(), cityAPIKey, "a connection's credentials never reach a history")
				require.NoError(t, replayer().ReplayWorkflowHistory(quietLogger(), hist))

				if *update {
					anonymizeStickyQueues(hist)
					b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
					require.NoError(t, err)
					require.NoError(t, os.WriteFile(filepath.Join("testdata", rr.file), append(b, '\n'), 0o644))
				}
			})
		}
	})

	t.Run("strict outputs", r.strictOutputs)
	t.Run("custom output rule", r.customOutputRule)
	t.Run("judged output rule", r.judgedOutputRule)

	// Start's wait, eager start then an update, also answers runs that end
	// in their first workflow task (here: input the prompt refuses), which
	// the update often reaches only after the run has closed. (After the
	// runs above: Start does not wait for the search attributes.)
	rc, err := runs.New(r.c, runs.StartThenUpdate)
	require.NoError(t, err)
	for i := range 20 {
		bad := r.structuredRun(structuredDoc(true, 2), map[string]any{"name": "Ada", "age": -1})
		bad.ResponseID = fmt.Sprintf("resp_quick_%d_%s", i, uuid.NewString())
		wait, err := rc.Start(r.ctx, bad, runs.Completed)
		require.NoError(t, err)
		out, err := wait()
		require.NoError(t, err, "run %d", i)
		require.Equal(t, run.StatusFailed, out.Status)
		require.Equal(t, run.InvalidInput, out.Error.Code)
	}
}

// startWhenAttributesAreKnown starts the run, trying again while the
// server has yet to learn the search attributes just registered (its
// namespace cache refreshes every few seconds).
func startWhenAttributesAreKnown(ctx context.Context, t *testing.T, c client.Client, in run.Input) client.WorkflowRun {
	t.Helper()
	for {
		we, err := c.ExecuteWorkflow(ctx, runs.StartOptions(in), run.WorkflowName, in)
		var invalid *serviceerror.InvalidArgument
		if !errors.As(err, &invalid) {
			require.NoError(t, err)
			return we
		}
		select {
		case <-ctx.Done():
			t.Fatalf("start: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func history(ctx context.Context, t *testing.T, c client.Client, id string) *historypb.History {
	t.Helper()
	iter := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for iter.HasNext() {
		e, err := iter.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, e)
	}
	return h
}

// anonymizeStickyQueues renames the worker's sticky task queue, which the
// SDK names after the host, so the saved history says nothing of the
// machine that recorded it. Replay does not read task queue names.
func anonymizeStickyQueues(h *historypb.History) {
	for _, e := range h.Events {
		tq := e.GetWorkflowTaskScheduledEventAttributes().GetTaskQueue()
		if tq.GetKind() == enumspb.TASK_QUEUE_KIND_STICKY {
			tq.Name = "promptrun-test-sticky"
		}
	}
}

// replayer replays histories of PromptRun.
func replayer() worker.WorkflowReplayer {
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(workflows.PromptRun, workflow.RegisterOptions{Name: run.WorkflowName})
	r.RegisterWorkflowWithOptions(workflows.Evaluation, workflow.RegisterOptions{Name: evaluation.WorkflowName})
	return r
}

func quietLogger() log.Logger { return log.NewStructuredLogger(slog.New(slog.DiscardHandler)) }
