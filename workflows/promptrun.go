package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/run"
)

// MaxModelCalls is the hard cap on a run's model calls, whatever the
// document allows; reaching it fails the run with run.StepLimit.
const MaxModelCalls = 16

// PromptRun executes one run of one pinned prompt version: prepare (validate
// the input, render the messages), list the tools of the prompt's
// connections, call the model, run the tools it asks for and feed their
// results back, check a structured reply and repair it while the document
// allows, record the run. A call of the caller's function tool, or of a
// connection tool that needs approval, pauses the run durably until it is
// continued (run.UpdateContinue) or approved (run.UpdateApprove); each stretch
// between pauses is a turn, one OpenAI response. A run the caller or the
// model got wrong still completes, with Status failed and Error set
// (invalid input, a template that fails, the upstream's 4xx, an output that
// stays invalid); the workflow itself fails only when the worker's own
// infrastructure does, such as the database after every retry.
//
// A run cancelled (Temporal's cancellation: POST /v1/responses/{id}/cancel)
// stops where it is: the model call in flight is cancelled with it, no
// further call is made, its turn ends with status cancelled, the run is
// recorded as cancelled, and the workflow ends cancelled.
func PromptRun(ctx workflow.Context, in run.Input) (run.Turn, error) {
	r := &promptRun{in: in, subject: in.StreamSubject, eventKey: in.EventKey, startedAt: workflow.Now(ctx)}
	out, err := r.run(ctx)
	if err != nil && ctx.Err() != nil {
		return r.cancelled(ctx, err)
	}
	return out, err
}

// cancelRecordChange marks runs that, once cancelled, record themselves
// as cancelled and end their turn so.
const cancelRecordChange = "cancel-record"

// cancelled ends a run whose workflow was cancelled, err being what
// stopped it: the turn under way ends cancelled (a run paused after a
// turn keeps that turn as it ended), the run is recorded as cancelled, and
// the workflow ends cancelled.
func (r *promptRun) cancelled(ctx workflow.Context, err error) (run.Turn, error) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if workflow.GetVersion(dctx, cancelRecordChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return run.Turn{}, err
	}
	if n := len(r.turns); n == 0 || r.turns[n-1].Turn != r.cur.Turn {
		r.waiting = false
		r.cur.Status, r.cur.Error = run.StatusCancelled, nil
		r.endTurn(dctx)
	}
	r.waiting = false
	if rerr := r.record(dctx, run.StatusCancelled); rerr != nil {
		return run.Turn{}, rerr
	}
	return r.cur, temporal.NewCanceledError()
}

// run is PromptRun until the run ends, or fails with err.
func (r *promptRun) run(ctx workflow.Context) (run.Turn, error) {
	if err := r.handlers(ctx); err != nil {
		return run.Turn{}, err
	}
	r.beginTurn(ctx, "")
	if err := r.prepare(ctx); err != nil {
		return run.Turn{}, err
	}
	if r.prepared {
		if err := r.resolveTools(ctx); err != nil {
			return run.Turn{}, err
		}
	}
	for r.prepared && r.cur.Status != run.StatusFailed {
		if err := r.callLoop(ctx); err != nil {
			return run.Turn{}, err
		}
		if !r.waiting {
			break
		}
		if r.in.EndAtPause {
			r.endAtPause()
			break
		}
		// Paused: the turn is over for its caller, the run is not.
		r.endTurn(ctx)
		if err := r.record(ctx, run.StatusWaiting); err != nil {
			return run.Turn{}, err
		}
		resumed, err := workflow.AwaitWithTimeout(ctx, PauseTimeout, func() bool { return r.resume != nil })
		if err != nil {
			return run.Turn{}, fmt.Errorf("prompt run: wait: %w", err)
		}
		if !resumed {
			r.waiting = false
			r.runErr = &run.Error{Code: run.PauseTimeout, Message: fmt.Sprintf("nobody answered the paused run within %s", PauseTimeout)}
			return r.finish(ctx)
		}
		prev := r.cur.ResponseID
		r.beginTurn(ctx, prev)
		if err := r.applyResume(ctx); err != nil {
			return run.Turn{}, err
		}
	}
	r.endTurn(ctx)
	return r.finish(ctx)
}

// PauseTimeout is how long a paused run waits for function outputs or
// approvals before it ends as it stands.
const PauseTimeout = 7 * 24 * time.Hour

// promptRun is the state of one run as the workflow advances it.
type promptRun struct {
	in        run.Input
	subject   string // where the current turn streams
	eventKey  string // what the current turn's stream is signed with
	startedAt time.Time
	prepared  bool
	prep      activities.PrepareRunResult

	tools    []chat.Tool                     // offered to the model
	routes   map[string]activities.ToolRoute // connection tools by offered name
	listings []activities.ToolListing        // what each connection listed
	// replayCalls counts a replay's recorded-tool calls by
	// activities.CallKey, so the n-th call gets the n-th recorded result.
	replayCalls map[string]int
	functions   map[string]bool // the caller's function tools
	messages    []chat.Message
	repairs     int

	calls     []activities.ModelCall // every model call, numbered from 1
	toolCalls []run.ToolCall         // every connection tool call
	usage     run.Usage

	cur   run.Turn   // the turn in progress, or the last one
	turns []run.Turn // the turns that ended

	// A paused run: the reply's calls in order, the outputs known so far by
	// call id, the function calls and approvals it waits for.
	waiting   bool
	pending   []chat.ToolCall
	results   map[string]string
	approvals []*approval
	resume    *resumeInput
	runErr    *run.Error // a failure after the last turn (pause timeout)

	// recorded: the first model call ended the run, wrote its row and
	// announced it (activities.Announcement); nothing is left to record.
	recorded bool
}

func localOptions(ctx workflow.Context, nonRetryable ...string) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: localStepTimeout,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3, NonRetryableErrorTypes: nonRetryable},
	})
}

func (r *promptRun) beginTurn(ctx workflow.Context, prev string) {
	k := len(r.turns) + 1
	r.cur = run.Turn{
		ResponseID: run.TurnID(r.in.ResponseID, k), Turn: k, PreviousResponseID: prev,
		Model: r.prep.Deployment, StartedAt: workflow.Now(ctx),
	}
}

func (r *promptRun) endTurn(ctx workflow.Context) {
	r.cur.FinishedAt = workflow.Now(ctx)
	r.cur.Waiting = r.waiting
	r.turns = append(r.turns, r.cur)
}

// prepare runs PrepareRun. A typed failure fails the run; any other error
// fails the workflow.
func (r *promptRun) prepare(ctx workflow.Context) error {
	var a *activities.Activities
	ctx = localOptions(ctx, run.InvalidInput, run.InvalidPrompt, run.RenderFailed, run.RunRefused)
	err := workflow.ExecuteLocalActivity(ctx, a.PrepareRun, r.in).Get(ctx, &r.prep)
	if err == nil {
		r.prepared = true
		r.cur.Model = r.prep.Deployment
		r.messages = r.prep.Messages
		r.tools = r.prep.Tools
		r.functions = map[string]bool{}
		for _, t := range r.prep.Tools {
			r.functions[t.Function.Name] = true
		}
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case run.InvalidInput, run.InvalidPrompt, run.RenderFailed, run.RunRefused:
			f := run.FailureOf(appErr)
			r.fail(&run.Error{Code: appErr.Type(), Message: f.Message, Param: f.Param})
			return nil
		}
	}
	return fmt.Errorf("prompt run: prepare: %w", err)
}

// endAtPause ends, instead of pausing, a run whose caller cannot answer
// it: the turn is incomplete, with the calls it asked for in its output.
func (r *promptRun) endAtPause() {
	r.waiting = false
	r.cur.Status = run.StatusIncomplete
	r.cur.Error = &run.Error{Code: run.EndedAtPause, Message: "the run asked for function outputs or approvals, which nobody gives the runs of an evaluation"}
}

func (r *promptRun) fail(e *run.Error) {
	r.cur.Status = run.StatusFailed
	r.cur.Error = e
}

// finish records the run, waits for its updates to answer, and returns the
// last turn's output.
func (r *promptRun) finish(ctx workflow.Context) (run.Turn, error) {
	status := r.cur.Status
	if r.runErr != nil {
		status = run.StatusFailed
	}
	if err := r.record(ctx, status); err != nil {
		return run.Turn{}, err
	}
	// An update that waits for a turn must get its answer before the run
	// closes.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return run.Turn{}, fmt.Errorf("prompt run: wait for handlers: %w", err)
	}
	return r.cur, nil
}

// maxAnnouncement bounds what an announcement carries again in the first
// call's input (the run's input, a structured prompt's document): Temporal
// refuses a payload over 2 MB, terminating the run, and the call's messages
// already hold that input rendered. A run with more is recorded by the
// workflow.
const maxAnnouncement = 256 << 10
