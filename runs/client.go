// Package runs is the one client through which BudApp and the gateway ask
// Temporal about prompt runs: start one, continue or approve it, read a
// turn, its input and its history, cancel it; and start or cancel an
// evaluation, whose runs are its children. Callers name runs by their
// response ids; nothing outside this package holds a Temporal client for
// runs or parses a response id.
package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/customrule"
	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/run"
)

// How a run is started and its first turn awaited; see "Speed" in the
// README for what each costs.
const (
	// StartWithUpdate starts the run and waits on its first turn in one
	// request (update-with-start).
	StartWithUpdate = "update"
	// StartThenUpdate starts the run with eager start — a worker sharing
	// the caller's client runs its first workflow task at once, without a
	// poll — and then waits on the first turn with an update.
	StartThenUpdate = "start"
)

// StartTimeout bounds how long Start waits for the server to take a run: a
// Temporal that is down, or a namespace it lacks, is a *StartError after
// it, not a request that hangs. The wait for the turn itself has no bound.
const StartTimeout = 10 * time.Second

// Stages an update can be waited to.
const (
	// Accepted: the run has taken the request.
	Accepted = client.WorkflowUpdateStageAccepted
	// Completed: the turn the request waits for has ended too.
	Completed = client.WorkflowUpdateStageCompleted
)

// ErrNotFound is a response id that names no run of the caller's project:
// not a response id, no such run, or a run of another project.
var ErrNotFound = errors.New("runs: no such run")

// ErrNotResponseID is an ErrNotFound whose id is not even a response id of
// Bud's ("resp_…", or "resp_…_n" for a later turn).
var ErrNotResponseID = fmt.Errorf("%w: not a response id", ErrNotFound)

// StartError is a run that could not be started.
type StartError struct{ Err error }

func (e *StartError) Error() string { return fmt.Sprintf("start prompt run: %v", e.Err) }
func (e *StartError) Unwrap() error { return e.Err }

// Wait gives a turn's output once it has ended.
type Wait func() (run.Turn, error)

// Client asks Temporal about runs. It is safe for concurrent use.
type Client struct {
	tc   client.Client
	mode string
	// Namespace is the Temporal namespace of tc, which deleting a run
	// names; "" is "default", the SDK's.
	Namespace string
}

// New returns a client over tc that starts runs the way mode says:
// StartThenUpdate ("" too) or StartWithUpdate.
func New(tc client.Client, mode string) (*Client, error) {
	switch mode {
	case "", StartThenUpdate, StartWithUpdate:
	default:
		return nil, fmt.Errorf("runs: start mode %q is neither %q nor %q", mode, StartThenUpdate, StartWithUpdate)
	}
	return &Client{tc: tc, mode: mode}, nil
}

// WaitsByUpdate reports whether the client waits on a first turn with the
// start itself (update-with-start), which answers as soon as the turn ends,
// so an announcement of the turn's end would arrive no sooner.
func (c *Client) WaitsByUpdate() bool { return c.mode == StartWithUpdate }

// Start starts a run of in and returns once the run has started
// (StartThenUpdate) or, with update-with-start, once the server has reached
// stage; wait then gives the first turn's output as soon as that turn ends,
// even when the run goes on to wait for function outputs or approvals. A
// run that could not be started within StartTimeout is a *StartError; one
// that started but whose worker did not take the wait in that time is
// waited for all the same.
func (c *Client) Start(ctx context.Context, in run.Input, stage client.WorkflowUpdateStage) (Wait, error) {
	opts := StartOptions(in)
	await := client.UpdateWorkflowOptions{
		WorkflowID:   in.ResponseID,
		UpdateName:   run.UpdateAwaitTurn,
		Args:         []any{1},
		WaitForStage: stage,
	}
	sctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	if c.mode != StartWithUpdate {
		we, err := c.tc.ExecuteWorkflow(sctx, opts, run.WorkflowName, in)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &StartError{err}
		}
		// No first-turn wait is ever refused: it may reach the server only
		// once the run has finished (or while its last workflow task runs,
		// and the server then aborts it as NotFound), and a run that
		// finished before anyone could continue it has its first turn as
		// its result.
		return func() (out run.Turn, err error) {
			await.WaitForStage = client.WorkflowUpdateStageCompleted
			h, err := c.tc.UpdateWorkflow(ctx, await)
			if err == nil {
				err = h.Get(ctx, &out)
			}
			if _, ok := errors.AsType[*serviceerror.NotFound](err); ok {
				err = we.Get(ctx, &out)
			}
			return out, err
		}, nil
	}
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL
	opts.EnableEagerStart = false // not offered with update-with-start
	start := c.tc.NewWithStartWorkflowOperation(opts, run.WorkflowName, in)
	withStart := await
	withStart.WorkflowID = ""
	h, err := c.tc.UpdateWithStartWorkflow(sctx, client.UpdateWithStartWorkflowOptions{StartWorkflowOperation: start, UpdateOptions: withStart})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		we, serr := start.Get(gctx)
		cancel()
		if serr != nil || we == nil {
			return nil, &StartError{err}
		}
		// Started, but not taken in time: wait for it on its own.
		if h, err = c.tc.UpdateWorkflow(ctx, await); err != nil {
			return nil, err
		}
	}
	return func() (out run.Turn, err error) {
		err = h.Get(ctx, &out)
		return out, err
	}, nil
}

// StartBackground starts a run of in and returns once the server has it,
// without waiting for any turn: a background response, which its caller
// polls (Turn). A run not started within StartTimeout is a *StartError.
func (c *Client) StartBackground(ctx context.Context, in run.Input) error {
	sctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	if _, err := c.tc.ExecuteWorkflow(sctx, StartOptions(in), run.WorkflowName, in); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &StartError{err}
	}
	return nil
}

// Closed waits, up to ctx's end, for the run runID to close, and reports
// whether it has.
func (c *Client) Closed(ctx context.Context, runID string) bool {
	_ = c.tc.GetWorkflow(ctx, runID, "").Get(ctx, nil) // a run that failed or was cancelled has closed too
	return ctx.Err() == nil
}

// Run is one turn of a run of a project, found by its response id.
type Run struct {
	// ID is the run's id (its first response id, its workflow id).
	ID string
	// Turn is the turn the response id names, from 1.
	Turn int
	// Input is what the run was started with.
	Input run.Input
	// Created is when the run started.
	Created time.Time
}

// NextResponseID is the response id of the turn after r.Turn.
func (r Run) NextResponseID() string { return run.TurnID(r.ID, r.Turn+1) }

// Find returns the run, and the turn, that responseID names, if it is a run
// of project; ErrNotFound when there is none such. It reads the first event
// of the run's history.
func (c *Client) Find(ctx context.Context, project uuid.UUID, responseID string) (Run, error) {
	runID, n, ok := run.ParseTurnID(responseID)
	if !ok {
		return Run{}, ErrNotResponseID
	}
	hist := c.tc.GetWorkflowHistory(ctx, runID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !hist.HasNext() {
		return Run{}, ErrNotFound
	}
	ev, err := hist.Next()
	if err != nil {
		if isNotFound(err) {
			return Run{}, ErrNotFound
		}
		return Run{}, fmt.Errorf("read run history: %w", err)
	}
	attrs := ev.GetWorkflowExecutionStartedEventAttributes()
	if attrs == nil || attrs.GetWorkflowType().GetName() != run.WorkflowName {
		return Run{}, ErrNotFound
	}
	var in run.Input
	payloads := attrs.GetInput().GetPayloads()
	if len(payloads) == 0 || json.Unmarshal(payloads[0].GetData(), &in) != nil || in.ProjectID != project {
		return Run{}, ErrNotFound
	}
	return Run{ID: runID, Turn: n, Input: in, Created: ev.GetEventTime().AsTime()}, nil
}

func isNotFound(err error) bool {
	var notFound *serviceerror.NotFound
	var invalid *serviceerror.InvalidArgument
	return errors.As(err, &notFound) || errors.As(err, &invalid)
}

// History returns the whole history of the run runID; ErrNotFound when
// there is no such run.
func (c *Client) History(ctx context.Context, runID string) (*historypb.History, error) {
	if _, _, ok := run.ParseTurnID(runID); !ok {
		return nil, ErrNotFound
	}
	it := c.tc.GetWorkflowHistory(ctx, runID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			if isNotFound(err) {
				return nil, ErrNotFound
			}
			return nil, fmt.Errorf("read run history: %w", err)
		}
		h.Events = append(h.Events, ev)
	}
	if len(h.Events) == 0 {
		return nil, ErrNotFound
	}
	return h, nil
}

// Turn returns turn n of the run runID as it stands, by query (a worker
// replays a closed run to answer). When the query fails on a closed run,
// the run's result stands for its last turn. found is false for a turn the
// run has not had. A turn whose workflow failed reports ServerFailure.
func (c *Client) Turn(ctx context.Context, runID string, n int) (out run.Turn, found bool, err error) {
	val, qerr := c.tc.QueryWorkflow(ctx, runID, "", run.QueryTurn, n)
	if qerr == nil {
		if err := val.Get(&out); err != nil {
			return out, false, fmt.Errorf("decode turn %d: %w", n, err)
		}
		if out.Status != run.StatusInProgress {
			return out, true, nil
		}
	}
	desc, err := c.tc.DescribeWorkflowExecution(ctx, runID, "")
	if err != nil {
		return out, false, fmt.Errorf("describe run: %w", err)
	}
	closed := desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	switch {
	case qerr == nil && !closed:
		return out, true, nil
	case qerr == nil:
		// The run closed while the turn was under way: its workflow
		// failed, was terminated or timed out.
		out.Status, out.Error = run.StatusFailed, ServerFailure(runID)
		return out, true, nil
	case !closed:
		var notReady *serviceerror.WorkflowNotReady
		if errors.As(qerr, &notReady) && n == 1 {
			return run.Turn{Status: run.StatusInProgress}, true, nil
		}
		var failed *serviceerror.QueryFailed
		if errors.As(qerr, &failed) {
			return out, false, nil
		}
		return out, false, fmt.Errorf("query turn %d: %w", n, qerr)
	}
	var res run.Turn
	if err := c.tc.GetWorkflow(ctx, runID, "").Get(ctx, &res); err != nil {
		if n != 1 {
			return out, false, nil
		}
		return run.Turn{Status: run.StatusFailed, Error: ServerFailure(runID)}, true, nil
	}
	if res.Turn != n && (res.Turn != 0 || n != 1) {
		return out, false, nil
	}
	return res, true, nil
}

// ServerFailure is the error of a turn whose workflow failed: the worker's
// infrastructure failed, not the caller or the model; the run's history
// says why.
func ServerFailure(runID string) *run.Error {
	return &run.Error{Code: run.ServerError, Message: "The run failed; its history (run " + runID + ") says why."}
}

// Running reports whether runID is a run still running, and since when.
func (c *Client) Running(ctx context.Context, runID string) (started time.Time, running bool, err error) {
	if _, _, ok := run.ParseTurnID(runID); !ok {
		return started, false, nil
	}
	desc, err := c.tc.DescribeWorkflowExecution(ctx, runID, "")
	if _, ok := errors.AsType[*serviceerror.NotFound](err); ok {
		return started, false, nil
	}
	if err != nil {
		return started, false, fmt.Errorf("describe run: %w", err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetType().GetName() != run.WorkflowName || info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return started, false, nil
	}
	return info.GetStartTime().AsTime(), true, nil
}

// Continue resumes the paused run r with ci and returns once the server has
// the update at stage; wait then gives the next turn's output. A continue
// the run refuses (run.InvalidContinue, see run.Refused) is an error here,
// before any wait; so is a run that has ended (ErrNotFound).
func (c *Client) Continue(ctx context.Context, runID string, ci run.ContinueInput, stage client.WorkflowUpdateStage) (Wait, error) {
	h, err := c.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   runID,
		UpdateName:   run.UpdateContinue,
		Args:         []any{ci},
		WaitForStage: stage,
	})
	if err != nil {
		return nil, notFoundAs(err, ErrNotFound)
	}
	if err := refusal(h); err != nil {
		return nil, err
	}
	return func() (out run.Turn, err error) {
		err = h.Get(ctx, &out)
		return out, err
	}, nil
}

// Approve decides one approval request of the run runID and returns once
// the run has taken the decision. The run refuses a decision of a request
// it lacks (run.NoApprovalRequest) or has decided, or when it does not
// wait (run.InvalidContinue); a run that has ended or never was is
// ErrNotFound.
func (c *Client) Approve(ctx context.Context, runID string, d run.ApprovalDecision) error {
	if _, _, ok := run.ParseTurnID(runID); !ok {
		return ErrNotFound
	}
	h, err := c.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   runID,
		UpdateName:   run.UpdateApprove,
		Args:         []any{d},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	return notFoundAs(err, ErrNotFound)
}

// Cancel asks the run runID to stop; ErrNotFound when it is not running.
func (c *Client) Cancel(ctx context.Context, runID string) error {
	if _, _, ok := run.ParseTurnID(runID); !ok {
		return ErrNotFound
	}
	return notFoundAs(c.tc.CancelWorkflow(ctx, runID, ""), ErrNotFound)
}

// StartEvaluation starts the workflow of the evaluation id
// (evaluation.WorkflowID) on the runs' task queue with in, the workflow's
// input (workflows.EvaluationInput, which this package cannot name: the
// workflow starts its runs through it), with EvaluationPriority, which its
// runs inherit.
func (c *Client) StartEvaluation(ctx context.Context, id uuid.UUID, in any) error {
	opts := client.StartWorkflowOptions{ID: evaluation.WorkflowID(id), TaskQueue: run.TaskQueue, Priority: EvaluationPriority(id)}
	_, err := c.tc.ExecuteWorkflow(ctx, opts, evaluation.WorkflowName, in)
	if err != nil {
		return fmt.Errorf("start evaluation: %w", err)
	}
	return nil
}

// CancelEvaluation asks the evaluation id to stop, its runs in flight with
// it. Asking one that has ended changes nothing; ErrNotFound when the
// server has no such evaluation.
func (c *Client) CancelEvaluation(ctx context.Context, id uuid.UUID) error {
	return notFoundAs(c.tc.CancelWorkflow(ctx, evaluation.WorkflowID(id), ""), ErrNotFound)
}

// notFoundAs is err, or target wrapping it when the server has no such run
// running.
func notFoundAs(err, target error) error {
	if _, ok := errors.AsType[*serviceerror.NotFound](err); ok {
		return fmt.Errorf("%w: %w", target, err)
	}
	return err
}

// refusal returns the error of an update its validator refused. A refusal
// is the update's outcome by the time the server answers, even at stage
// Accepted, and the handle of an update with an outcome answers Get without
// asking the server; so Get with a context already done returns the
// refusal, or says the outcome is still to come, without waiting for it.
func refusal(h client.WorkflowUpdateHandle) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := h.Get(ctx, nil)
	var pending *client.WorkflowUpdateServiceTimeoutOrCanceledError
	if err == nil || errors.As(err, &pending) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// TranslateRules starts the translation of custom rules (the workflow
// customrule.WorkflowName) and waits for its result, at most
// customrule.Timeout.
func (c *Client) TranslateRules(ctx context.Context, req customrule.Request) (customrule.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, customrule.Timeout)
	defer cancel()
	opts := client.StartWorkflowOptions{
		ID:                       customrule.WorkflowID(uuid.NewString()),
		TaskQueue:                run.TaskQueue,
		WorkflowExecutionTimeout: customrule.Timeout,
	}
	we, err := c.tc.ExecuteWorkflow(ctx, opts, customrule.WorkflowName, req)
	if err != nil {
		return customrule.Result{}, fmt.Errorf("start rule translation: %w", err)
	}
	var out customrule.Result
	if err := we.Get(ctx, &out); err != nil {
		return customrule.Result{}, fmt.Errorf("rule translation: %w", err)
	}
	return out, nil
}

// Delete deletes the run runID's workflow execution and its history from
// Temporal (the server removes it in the background, within seconds);
// ErrNotFound when there is none.
func (c *Client) Delete(ctx context.Context, runID string) error {
	ns := c.Namespace
	if ns == "" {
		ns = "default"
	}
	_, err := c.tc.WorkflowService().DeleteWorkflowExecution(ctx, &workflowservice.DeleteWorkflowExecutionRequest{
		Namespace:         ns,
		WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: runID},
	})
	if isNotFound(err) {
		return ErrNotFound
	}
	return err
}

// Continues returns the continues the run runID accepted, in order: the
// k-th is what started turn k+1. It reads the run's history.
func (c *Client) Continues(ctx context.Context, runID string) ([]run.ContinueInput, error) {
	h, err := c.History(ctx, runID)
	if err != nil {
		return nil, err
	}
	var out []run.ContinueInput
	for _, ev := range h.GetEvents() {
		req := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes().GetAcceptedRequest().GetInput()
		if req.GetName() != run.UpdateContinue {
			continue
		}
		var ci run.ContinueInput
		args := req.GetArgs().GetPayloads()
		if len(args) == 0 || json.Unmarshal(args[0].GetData(), &ci) != nil {
			return nil, fmt.Errorf("read continue of run %s: undecodable input", runID)
		}
		out = append(out, ci)
	}
	return out, nil
}
