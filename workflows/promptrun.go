package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud"
	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runstream"
)

// MaxModelCalls is the hard cap on a run's model calls, whatever the
// document allows; reaching it fails the run with run.StepLimit.
const MaxModelCalls = 16

// Timeouts and retries of a run's steps.
const (
	// CallModelTimeout bounds one attempt of a model call.
	CallModelTimeout = 5 * time.Minute
	// CallModelHeartbeatTimeout is how soon a model call whose worker died
	// is retried; CallModel heartbeats several times within it.
	CallModelHeartbeatTimeout = 10 * time.Second
	// CallModelAttempts is how many times a model call is tried when the
	// deployment times out or answers 408, 429 or 5xx.
	CallModelAttempts = 5
	localStepTimeout  = 10 * time.Second
	recordRunTimeout  = 30 * time.Second
)

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
func PromptRun(ctx workflow.Context, in run.Input) (run.Turn, error) {
	r := &promptRun{in: in, subject: in.StreamSubject, startedAt: workflow.Now(ctx)}
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

// promptRun is the state of one run as the workflow advances it.
type promptRun struct {
	in        run.Input
	subject   string // where the current turn streams
	startedAt time.Time
	prepared  bool
	prep      activities.PrepareRunResult

	tools     []chat.Tool                     // offered to the model
	routes    map[string]activities.ToolRoute // connection tools by offered name
	functions map[string]bool                 // the caller's function tools
	messages  []chat.Message
	repairs   int

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

type approval struct {
	req      run.ApprovalRequest
	route    activities.ToolRoute
	decided  bool
	approved bool
	reason   string
}

// resumeInput is what a continue or the last approval brings.
type resumeInput struct {
	outputs   map[string]string // function outputs by call id
	decisions []decision        // the continue's approval responses
	messages  []chat.Message
}

// decision is an approval response to apply.
type decision struct {
	a        *approval
	approved bool
	reason   string
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

// handlers registers the run's updates and query.
func (r *promptRun) handlers(ctx workflow.Context) error {
	err := workflow.SetUpdateHandlerWithOptions(ctx, run.UpdateAwaitTurn,
		func(ctx workflow.Context, n int) (run.Turn, error) {
			if err := workflow.Await(ctx, func() bool { return len(r.turns) >= n }); err != nil {
				return run.Turn{}, err
			}
			return r.turns[n-1], nil
		},
		workflow.UpdateHandlerOptions{Validator: func(n int) error {
			if n < 1 || n > len(r.turns)+1 {
				return temporal.NewApplicationError(fmt.Sprintf("the run has no turn %d yet", n), run.InvalidContinue)
			}
			return nil
		}},
	)
	if err != nil {
		return fmt.Errorf("prompt run: register %s: %w", run.UpdateAwaitTurn, err)
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, run.UpdateContinue,
		func(ctx workflow.Context, c run.ContinueInput) (run.Turn, error) {
			res, err := r.continueInput(c)
			if err != nil {
				return run.Turn{}, err
			}
			k := r.cur.Turn
			for _, d := range res.decisions {
				d.a.decided, d.a.approved, d.a.reason = true, d.approved, d.reason
			}
			r.subject = c.StreamSubject
			r.resume = res
			if err := workflow.Await(ctx, func() bool { return len(r.turns) > k }); err != nil {
				return run.Turn{}, err
			}
			return r.turns[k], nil
		},
		workflow.UpdateHandlerOptions{Validator: func(c run.ContinueInput) error {
			_, err := r.continueInput(c)
			return err
		}},
	)
	if err != nil {
		return fmt.Errorf("prompt run: register %s: %w", run.UpdateContinue, err)
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, run.UpdateApprove,
		func(ctx workflow.Context, d run.ApprovalDecision) error {
			a := r.findApproval(d.ID)
			if a == nil || a.decided {
				return r.checkApproval(d)
			}
			a.decided, a.approved, a.reason = true, d.Approve, d.Reason
			if r.resume == nil && r.ready() {
				// Nobody watches the turn this starts: the paused turn's
				// stream is over.
				r.subject = ""
				r.resume = &resumeInput{}
			}
			return nil
		},
		workflow.UpdateHandlerOptions{Validator: r.checkApproval},
	)
	if err != nil {
		return fmt.Errorf("prompt run: register %s: %w", run.UpdateApprove, err)
	}
	err = workflow.SetQueryHandler(ctx, run.QueryTurn, func(n int) (run.Turn, error) {
		switch {
		case n >= 1 && n <= len(r.turns):
			return r.turns[n-1], nil
		case n == len(r.turns)+1 && r.cur.Turn == n: // begun, not ended
			out := r.cur
			out.Status = run.StatusInProgress
			return out, nil
		}
		return run.Turn{}, fmt.Errorf("the run has no turn %d", n)
	})
	if err != nil {
		return fmt.Errorf("prompt run: register %s: %w", run.QueryTurn, err)
	}
	return nil
}

// refuse is a refusal of the request as a whole; refuseAt, of the request
// field param ("previous_response_id", "input[1].call_id"), which travels
// in the failure's details for run.Refused to find.
func refuse(format string, args ...any) error { return refuseAt("", format, args...) }

func refuseAt(param, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), run.InvalidContinue, nil, param)
}

// refuseInput refuses the input with a problem an item reader found (a
// *bud.Error naming the field).
func refuseInput(err error) error {
	param := ""
	for f := range bud.ErrorFields(err) {
		param = f
	}
	return refuseAt(param, "%s", bud.ErrorMessage(err))
}

func (r *promptRun) findApproval(id string) *approval {
	for _, a := range r.approvals {
		if a.req.ID == id || a.req.CallID == id {
			return a
		}
	}
	return nil
}

// checkApproval validates a decision: there must be such a request, still
// undecided.
func (r *promptRun) checkApproval(d run.ApprovalDecision) error {
	a := r.findApproval(d.ID)
	switch {
	case !r.waiting || r.resume != nil:
		return refuse("the run does not wait for approvals")
	case a == nil:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("the run has no approval request %q", d.ID), run.NoApprovalRequest, nil)
	case a.decided:
		verdict := "rejected"
		if a.approved {
			verdict = "approved"
		}
		return refuse("approval request %q is already %s", a.req.ID, verdict)
	}
	return nil
}

// ready reports whether a paused run has everything it waits for but the
// caller's function outputs, and needs none of those.
func (r *promptRun) ready() bool {
	for _, a := range r.approvals {
		if !a.decided {
			return false
		}
	}
	return len(r.cur.FunctionCalls) == 0
}

// continueInput checks a continue against the paused turn and reads it;
// it changes nothing (it is the update's validator too): the approvals it
// decides are in the result.
func (r *promptRun) continueInput(c run.ContinueInput) (*resumeInput, error) {
	if !r.waiting || r.resume != nil {
		return nil, refuseAt("previous_response_id", "response %s does not wait for input: only a response that returned function calls or approval requests can be continued, once", c.PreviousResponseID)
	}
	if c.PreviousResponseID != r.cur.ResponseID {
		return nil, refuseAt("previous_response_id", "response %s is not the run's latest; continue from %s", c.PreviousResponseID, r.cur.ResponseID)
	}
	var items []activities.InputItem
	if len(c.InputItems) > 0 {
		if err := json.Unmarshal(c.InputItems, &items); err != nil {
			return nil, refuseAt("input", "input must be a list of input items: %v", err)
		}
	}
	res := &resumeInput{outputs: map[string]string{}}
	decided := map[*approval]bool{}
	for i, it := range items {
		path := fmt.Sprintf("input[%d]", i)
		switch it.Type {
		case "function_call_output":
			if !slices.ContainsFunc(r.cur.FunctionCalls, func(f run.FunctionCall) bool { return f.CallID == it.CallID }) {
				return nil, refuseAt(path+".call_id", "%s.call_id: %q is not a function call of response %s", path, it.CallID, r.cur.ResponseID)
			}
			text, err := activities.ContentText(path+".output", it.Output)
			if err != nil {
				return nil, refuseInput(err)
			}
			res.outputs[it.CallID] = text
		case "mcp_approval_response":
			a := r.findApproval(it.ApprovalRequestID)
			switch {
			case a == nil:
				return nil, refuseAt(path+".approval_request_id", "input[%d].approval_request_id: %q is not an approval request of response %s", i, it.ApprovalRequestID, r.cur.ResponseID)
			case it.Approve == nil:
				return nil, refuseAt(path+".approve", "input[%d].approve is required", i)
			case a.decided && a.approved != *it.Approve:
				return nil, refuseAt(path, "input[%d]: approval request %q was already decided the other way", i, a.req.ID)
			}
			decided[a] = true
			if !a.decided {
				res.decisions = append(res.decisions, decision{a: a, approved: *it.Approve, reason: it.Reason})
			}
		case "message", "":
			m, err := activities.MessageItem(path, it)
			if err != nil {
				return nil, refuseInput(err)
			}
			res.messages = append(res.messages, m)
		default:
			return nil, refuseAt(path+".type", "input[%d].type: %q items cannot continue a run; use function_call_output, mcp_approval_response or message", i, it.Type)
		}
	}
	for _, f := range r.cur.FunctionCalls {
		if _, ok := res.outputs[f.CallID]; !ok {
			return nil, refuseAt("input", "input: no function_call_output for call %q (%s)", f.CallID, f.Name)
		}
	}
	for _, a := range r.approvals {
		if !decided[a] && !a.decided {
			return nil, refuseAt("input", "input: no mcp_approval_response for approval request %q (%s)", a.req.ID, a.req.Name)
		}
	}
	return res, nil
}

// prepare runs PrepareRun. A typed failure fails the run; any other error
// fails the workflow.
func (r *promptRun) prepare(ctx workflow.Context) error {
	var a *activities.Activities
	ctx = localOptions(ctx, run.InvalidInput, run.InvalidPrompt, run.RenderFailed)
	err := workflow.ExecuteLocalActivity(ctx, a.PrepareRun, activities.PrepareRunInput{
		Document:     r.in.Document,
		Text:         r.in.Text,
		Variables:    r.in.Variables,
		InputItems:   r.in.InputItems,
		Instructions: r.in.Instructions,
	}).Get(ctx, &r.prep)
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
		case run.InvalidInput, run.InvalidPrompt, run.RenderFailed:
			f := run.FailureOf(appErr)
			r.fail(&run.Error{Code: appErr.Type(), Message: f.Message, Param: f.Param})
			return nil
		}
	}
	return fmt.Errorf("prompt run: prepare: %w", err)
}

// Timeouts and retries of the tool steps.
const (
	// ResolveToolsTimeout bounds listing the tools of all the prompt's
	// connections.
	ResolveToolsTimeout = time.Minute
	// CallToolTimeout bounds one attempt of one tool call.
	CallToolTimeout = 2 * time.Minute
	// CallToolAttempts is how often a tool call is tried when its
	// connection cannot be reached, times out or answers 429 or 5xx.
	CallToolAttempts = 3
)

func toolOptions(ctx workflow.Context, timeout time.Duration) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        10 * time.Second,
			MaximumAttempts:        CallToolAttempts,
			NonRetryableErrorTypes: []string{run.ToolRejected, run.ConnectionNotFound, run.ProviderKey},
		},
	})
}

// resolveTools lists the tools of the prompt's active connections; a
// prompt without any makes no step.
func (r *promptRun) resolveTools(ctx workflow.Context) error {
	if len(r.prep.ConnectionTools) == 0 {
		return nil
	}
	var a *activities.Activities
	taken := make([]string, 0, len(r.tools))
	for _, t := range r.tools {
		taken = append(taken, t.Function.Name)
	}
	var res activities.ResolveToolsResult
	err := workflow.ExecuteActivity(toolOptions(ctx, ResolveToolsTimeout), a.ResolveTools, activities.ResolveToolsInput{
		ProjectID: r.in.ProjectID, Tools: r.prep.ConnectionTools, Taken: taken,
	}).Get(ctx, &res)
	if err != nil {
		r.fail(&run.Error{Code: run.ToolsUnavailable, Message: toolErrorText(err)})
		return nil
	}
	r.tools = append(slices.Clip(r.tools), res.Tools...)
	r.routes = map[string]activities.ToolRoute{}
	for _, rt := range res.Routes {
		r.routes[rt.Name] = rt
	}
	return nil
}

// toolErrorText is a failed tool step's error as its caller and the model
// read it.
func toolErrorText(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return run.FailureOf(appErr).Message
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		return "the tool did not answer in time"
	}
	return "the tool call failed"
}

// callLoop calls the model until a reply ends the turn: a pause for
// function outputs or approvals, a reply cut off, a valid reply, or an
// invalid one once the repairs are used up.
func (r *promptRun) callLoop(ctx workflow.Context) error {
	var a *activities.Activities
	p := r.prep
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: CallModelTimeout,
		// A model call can take minutes; the heartbeat lets the server see
		// within seconds that its worker died, and retry it elsewhere.
		HeartbeatTimeout: CallModelHeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			MaximumAttempts:        CallModelAttempts,
			NonRetryableErrorTypes: []string{run.UpstreamRejected, run.ModelNotFound},
		},
	})
	for {
		if len(r.calls) >= MaxModelCalls {
			r.fail(&run.Error{Code: run.StepLimit, Message: fmt.Sprintf("the run reached its limit of %d model calls", MaxModelCalls)})
			return nil
		}
		n := len(r.calls) + 1
		call := activities.CallModelInput{
			ProjectID:      r.in.ProjectID,
			Deployment:     p.Deployment,
			Messages:       r.messages,
			ModelParams:    p.ModelParams,
			ResponseFormat: p.ResponseFormat,
			Tools:          r.tools,
		}
		if r.streaming() {
			call.Stream, call.StreamSubject, call.Call = true, r.subject, n
		}
		if n == 1 && len(r.turns) == 0 && r.in.TurnSubject != "" {
			// A reply that ends the run as it is ends it in the call's
			// activity, a workflow task before the workflow could.
			an, err := r.announcement(ctx, p.StructuredOutput)
			if err != nil {
				return err
			}
			call.Announce = an
		}
		var res activities.CallModelResult
		err := workflow.ExecuteActivity(ctx, a.CallModel, call).Get(ctx, &res)
		if err != nil {
			runErr, ok := callError(err, p.Deployment)
			if !ok {
				return fmt.Errorf("prompt run: call model: %w", err)
			}
			r.calls = append(r.calls, activities.ModelCall{Call: n, Error: runErr.Message})
			r.cur.ModelCalls++
			r.fail(runErr)
			return nil
		}
		r.addCall(n, res)
		r.recorded = res.Recorded

		switch status, ends := res.EndsTurn(); {
		case !ends:
			// A new slice each time: the calls' inputs must not share one.
			r.messages = append(slices.Clip(r.messages), chat.Message{Role: "assistant", Content: res.Content, ToolCalls: res.ToolCalls})
			if err := r.toolStep(ctx, n, res.ToolCalls); err != nil {
				return err
			}
			r.cur.Status = run.StatusCompleted
			if r.waiting || !p.AllowMultipleCalls {
				// Paused, or a turn of one model call: the calls' results
				// are in the turn's output, not fed back.
				return nil
			}
			r.feedBack(nil)
			continue
		case status == run.StatusIncomplete || !p.StructuredOutput:
			r.cur.Status = status
			return nil
		case res.Recorded:
			// The call checked the reply and ended the run with it.
			r.cur.Status, r.cur.Parsed = run.StatusCompleted, res.Parsed
			return nil
		}

		var check activities.CheckOutputResult
		lctx := localOptions(ctx, run.InvalidPrompt)
		if err := workflow.ExecuteLocalActivity(lctx, a.CheckOutput, activities.CheckOutputInput{
			Document: r.in.Document,
			Content:  res.Content,
		}).Get(lctx, &check); err != nil {
			return fmt.Errorf("prompt run: check output: %w", err)
		}
		verdict := runstream.TypeOutputRejected
		if check.Valid {
			verdict = runstream.TypeOutputAccepted
		}
		r.publish(ctx, runstream.Event{Type: verdict, Call: n})
		if check.Valid {
			r.cur.Status = run.StatusCompleted
			r.cur.Parsed = check.Parsed
			return nil
		}
		switch {
		case !p.AllowMultipleCalls:
			r.fail(&run.Error{Code: run.InvalidOutput, Message: check.Message})
			return nil
		case r.repairs >= max(p.LLMRetryLimit, 0):
			r.fail(&run.Error{Code: run.InvalidOutput, Message: fmt.Sprintf("%s (still invalid after %d repairs)", check.Message, r.repairs)})
			return nil
		case n >= MaxModelCalls:
			r.fail(&run.Error{Code: run.StepLimit, Message: fmt.Sprintf("the run reached its limit of %d model calls", MaxModelCalls)})
			return nil
		}
		r.repairs++
		r.messages = append(slices.Clip(r.messages),
			chat.Message{Role: "assistant", Content: res.Content},
			chat.Message{Role: "user", Content: RepairMessage(check)},
		)
	}
}

// toolStep sorts the calls of one reply: the caller's functions are
// returned to it, connection tools that need approval wait for it, the
// others run now, in parallel. Calls of tools the model was not offered get
// an error it can read. When anything waits, the run pauses (r.waiting).
func (r *promptRun) toolStep(ctx workflow.Context, n int, calls []chat.ToolCall) error {
	r.pending = calls
	r.results = map[string]string{}
	r.approvals = nil
	var now []int // indexes into r.toolCalls of calls to run now
	for _, c := range calls {
		name := c.Function.Name
		if r.functions[name] {
			fc := run.FunctionCall{CallID: c.ID, Name: name, Arguments: c.Function.Arguments}
			r.cur.FunctionCalls = append(r.cur.FunctionCalls, fc)
			r.toolEvent(ctx, n, runstream.TypeFunctionCall, &runstream.Tool{CallID: c.ID, Name: name, Arguments: c.Function.Arguments})
			continue
		}
		route, ok := r.routes[name]
		if !ok {
			msg := fmt.Sprintf("there is no tool named %q", name)
			r.results[c.ID] = "Error: " + msg
			k := r.addToolCall(run.ToolCall{ID: c.ID, Name: name, Arguments: c.Function.Arguments, Error: msg, Turn: r.cur.Turn, StartedAt: workflow.Now(ctx)})
			r.cur.ToolCalls = append(r.cur.ToolCalls, r.toolCalls[k])
			continue
		}
		tc := run.ToolCall{ID: c.ID, Name: route.Tool, ServerLabel: route.ServerLabel, ConnectionID: route.ConnectionID.String(), Arguments: c.Function.Arguments, Turn: r.cur.Turn}
		if route.RequireApproval {
			req := run.ApprovalRequest{ID: "mcpr_" + c.ID, CallID: c.ID, Name: route.Tool, ServerLabel: route.ServerLabel, Arguments: c.Function.Arguments}
			r.approvals = append(r.approvals, &approval{req: req, route: route})
			r.cur.ApprovalRequests = append(r.cur.ApprovalRequests, req)
			r.toolEvent(ctx, n, runstream.TypeApprovalRequest, &runstream.Tool{ID: req.ID, CallID: c.ID, Name: route.Tool, ServerLabel: route.ServerLabel, Arguments: c.Function.Arguments})
			continue
		}
		now = append(now, r.addToolCall(tc))
	}
	if err := r.execute(ctx, n, now); err != nil {
		return err
	}
	for _, k := range now {
		r.cur.ToolCalls = append(r.cur.ToolCalls, r.toolCalls[k])
	}
	r.waiting = len(r.cur.FunctionCalls) > 0 || len(r.approvals) > 0
	return nil
}

// addToolCall keeps a call in the run's list and returns its index there;
// callers put it in the turn's output themselves.
func (r *promptRun) addToolCall(tc run.ToolCall) int {
	r.toolCalls = append(r.toolCalls, tc)
	return len(r.toolCalls) - 1
}

// execute runs the tool calls at the given indexes of r.toolCalls in
// parallel, each an activity, and keeps their results for the model.
func (r *promptRun) execute(ctx workflow.Context, n int, idx []int) error {
	var a *activities.Activities
	actx := toolOptions(ctx, CallToolTimeout)
	futures := make([]workflow.Future, len(idx))
	for i, k := range idx {
		tc := &r.toolCalls[k]
		tc.StartedAt = workflow.Now(ctx)
		conn, _ := uuid.Parse(tc.ConnectionID)
		r.toolEvent(ctx, n, runstream.TypeToolCall, &runstream.Tool{CallID: tc.ID, Name: tc.Name, ServerLabel: tc.ServerLabel, Arguments: tc.Arguments, ApprovalRequestID: tc.ApprovalRequestID})
		futures[i] = workflow.ExecuteActivity(actx, a.CallTool, activities.CallToolInput{
			ProjectID: r.in.ProjectID, ConnectionID: conn, Tool: tc.Name, Arguments: tc.Arguments,
		})
	}
	for i, k := range idx {
		var res activities.CallToolResult
		err := futures[i].Get(ctx, &res)
		tc := &r.toolCalls[k]
		tc.LatencyMS = workflow.Now(ctx).Sub(tc.StartedAt).Milliseconds()
		ev := &runstream.Tool{CallID: tc.ID, Name: tc.Name, ServerLabel: tc.ServerLabel, Arguments: tc.Arguments, ApprovalRequestID: tc.ApprovalRequestID}
		switch {
		case err != nil:
			var canceled *temporal.CanceledError
			if errors.As(err, &canceled) {
				return fmt.Errorf("prompt run: call tool: %w", err)
			}
			tc.Error = toolErrorText(err)
			r.results[tc.ID] = "Error: " + tc.Error
			ev.Error = tc.Error
		case res.IsError:
			tc.Error = res.Output
			tc.LatencyMS, tc.Attempts = res.LatencyMS, res.Attempt
			r.results[tc.ID] = "Error: " + res.Output
			ev.Error = res.Output
		default:
			tc.Output = res.Output
			tc.LatencyMS, tc.Attempts = res.LatencyMS, res.Attempt
			r.results[tc.ID] = res.Output
			ev.Output = res.Output
		}
		r.toolEvent(ctx, n, runstream.TypeToolResult, ev)
	}
	return nil
}

// applyResume runs what a paused run was waiting for: the approved calls
// (rejected ones tell the model so), then feeds every result back with the
// continue's messages after them.
func (r *promptRun) applyResume(ctx workflow.Context) error {
	res := r.resume
	r.resume = nil
	r.waiting = false
	n := len(r.calls)
	var now, all []int
	for _, a := range r.approvals {
		approved := a.approved
		tc := run.ToolCall{ID: a.req.CallID, Name: a.req.Name, ServerLabel: a.req.ServerLabel, ConnectionID: a.route.ConnectionID.String(), Arguments: a.req.Arguments,
			ApprovalRequestID: a.req.ID, Approved: &approved, Reason: a.reason, Turn: r.cur.Turn, StartedAt: workflow.Now(ctx)}
		if !approved {
			msg := "The user rejected this tool call."
			if a.reason != "" {
				msg += " Reason: " + a.reason
			}
			tc.Error = msg
			r.results[tc.ID] = msg
			all = append(all, r.addToolCall(tc))
			continue
		}
		k := r.addToolCall(tc)
		now, all = append(now, k), append(all, k)
	}
	if err := r.execute(ctx, n, now); err != nil {
		return err
	}
	for _, k := range all {
		r.cur.ToolCalls = append(r.cur.ToolCalls, r.toolCalls[k])
	}
	for id, out := range res.outputs {
		r.results[id] = out
	}
	r.approvals = nil
	r.feedBack(res.messages)
	return nil
}

// feedBack appends one tool message per call of the last reply, in the
// reply's order, then extra messages.
func (r *promptRun) feedBack(extra []chat.Message) {
	msgs := slices.Clip(r.messages)
	for _, c := range r.pending {
		msgs = append(msgs, chat.Message{Role: "tool", ToolCallID: c.ID, Content: r.results[c.ID]})
	}
	r.messages = append(msgs, extra...)
	r.pending, r.results = nil, nil
}

// RepairMessage is the user message that sends an invalid reply back to the
// model: the problems found, and the request for a corrected answer.
func RepairMessage(check activities.CheckOutputResult) string {
	var b strings.Builder
	b.WriteString("Your previous reply is not valid output.\n")
	if len(check.Problems) > 0 {
		b.WriteString("Problems:\n")
		for _, p := range check.Problems {
			b.WriteString("- ")
			b.WriteString(p)
			b.WriteString("\n")
		}
	} else {
		b.WriteString(check.Message)
		b.WriteString("\n")
	}
	b.WriteString("Reply again with only the corrected JSON object, matching the required schema.")
	return b.String()
}

// streaming reports whether a caller watches the current turn's stream.
func (r *promptRun) streaming() bool { return r.subject != "" }

// publish sends one of the run's own events to a streaming caller (see
// package runstream): the verdict on a structured reply, which tells the
// gateway whether the text it holds is the output or will be repaired, and
// the tool events. A run that does not stream publishes nothing: its
// history is the one it had before streaming existed, which the replay test
// holds it to. Streaming is best effort: a failure to publish does not fail
// the run.
func (r *promptRun) publish(ctx workflow.Context, ev runstream.Event) {
	if !r.streaming() {
		return
	}
	var a *activities.Activities
	lctx := localOptions(ctx)
	err := workflow.ExecuteLocalActivity(lctx, a.PublishRunEvent, activities.PublishRunEventInput{Subject: r.subject, Event: ev}).Get(lctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("run event not published", "type", ev.Type, "err", err)
	}
}

// toolEvent publishes a tool event of model call n.
func (r *promptRun) toolEvent(ctx workflow.Context, n int, typ string, t *runstream.Tool) {
	r.publish(ctx, runstream.Event{Type: typ, Call: n, Tool: t})
}

// addCall keeps call n, which res answered, in the run and its turn.
func (r *promptRun) addCall(n int, res activities.CallModelResult) {
	r.calls = append(r.calls, activities.ModelCallOf(n, res))
	res.AddTo(&r.cur)
	r.usage.Add(res.Usage.PromptTokens, res.Usage.CompletionTokens, res.Usage.TotalTokens)
}

// AnnouncedTurn is the turn a runstream.TypeTurnEnded event announces, if
// ev is a readable announcement: the turn itself, as RecordRun sends it, or
// the turn before the first model call with the call's reply, as the call
// sends it when its reply ended the turn (activities.Announcement), made
// into the turn as the workflow makes it then (but for FinishedAt: the
// turn's start plus the call's latency, a little before the workflow's).
func AnnouncedTurn(ev runstream.Event) (run.Turn, bool) {
	var out run.Turn
	if ev.Type != runstream.TypeTurnEnded || json.Unmarshal(ev.Output, &out) != nil {
		return out, false
	}
	if ev.Reply == nil {
		return out, true
	}
	var res activities.CallModelResult
	if json.Unmarshal(ev.Reply, &res) != nil {
		return run.Turn{}, false
	}
	status, ends := res.EndsTurn()
	if !ends {
		return run.Turn{}, false
	}
	res.AddTo(&out)
	out.Parsed = res.Parsed
	out.Status = status
	out.FinishedAt = out.StartedAt.Add(time.Duration(res.LatencyMS) * time.Millisecond)
	return out, true
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

// record writes the run's row as it stands: status is the run's, which
// while paused is run.StatusWaiting. A run its model call recorded is not
// written again.
func (r *promptRun) record(ctx workflow.Context, status string) error {
	if r.recorded {
		return nil
	}
	rec, err := r.runRecord(ctx, status)
	if err != nil {
		return err
	}
	if r.in.TurnSubject != "" && len(r.turns) == 1 && r.runErr == nil {
		// The first turn has just ended (a pause timeout records a turn
		// that ended before): RecordRun announces it once the row is
		// written, so the caller's answer never runs ahead of the runs
		// table.
		rec.TurnSubject = r.in.TurnSubject
		if rec.Turn, err = json.Marshal(r.turns[0]); err != nil {
			return fmt.Errorf("prompt run: encode turn: %w", err)
		}
	}

	// A local activity: one insert does not need its own round trip through
	// the server, and a sequential run is ~5 ms faster for it. It is retried
	// by the workflow task like any local activity, so a crash re-runs it on
	// the next worker; the insert is an upsert on the run id.
	var a *activities.Activities
	ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: recordRunTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			MaximumAttempts:    10,
		},
	})
	if err := workflow.ExecuteLocalActivity(ctx, a.RecordRun, rec).Get(ctx, nil); err != nil {
		return fmt.Errorf("prompt run: record run: %w", err)
	}
	return nil
}

// maxAnnouncement bounds what an announcement carries again in the first
// call's input (the run's input, a structured prompt's document): Temporal
// refuses a payload over 2 MB, terminating the run, and the call's messages
// already hold that input rendered. A run with more is recorded by the
// workflow.
const maxAnnouncement = 256 << 10

// announcement lets the first model call end the first turn (see
// activities.Announcement): the row and the turn as they stand before it,
// and for a structured output the document to check the reply against;
// nil when the run's input and document are too large to carry again.
func (r *promptRun) announcement(ctx workflow.Context, structured bool) (*activities.Announcement, error) {
	rec, err := r.runRecord(ctx, "")
	if err != nil {
		return nil, err
	}
	// The first call's messages are the rendered ones: the history holds
	// them once.
	rec.RenderedMessages = nil
	turn, err := json.Marshal(r.cur)
	if err != nil {
		return nil, fmt.Errorf("prompt run: encode turn: %w", err)
	}
	an := &activities.Announcement{Subject: r.in.TurnSubject, Record: rec, Turn: turn}
	if structured {
		an.Document = r.in.Document
	}
	encoded, err := json.Marshal(an)
	if err != nil {
		return nil, fmt.Errorf("prompt run: encode announcement: %w", err)
	}
	if len(encoded) > maxAnnouncement {
		return nil, nil
	}
	return an, nil
}

// runRecord is the run's row as it stands, with status.
func (r *promptRun) runRecord(ctx workflow.Context, status string) (activities.RunRecord, error) {
	now := workflow.Now(ctx)
	rec := activities.RunRecord{
		ID:            r.in.ResponseID,
		ProjectID:     r.in.ProjectID,
		PromptID:      r.in.PromptID,
		PromptVersion: r.in.PromptVersion,
		Deployment:    r.in.Deployment,
		Model:         r.cur.Model,
		Source:        r.in.Source,
		Status:        status,
		Input: activities.RunInput{
			Text:         r.in.Text,
			Variables:    r.in.Variables,
			InputItems:   r.in.InputItems,
			Instructions: r.in.Instructions,
		},
		ModelCalls:   r.calls,
		InputTokens:  r.usage.InputTokens,
		OutputTokens: r.usage.OutputTokens,
		LatencyMS:    now.Sub(r.startedAt).Milliseconds(),
		Metadata:     r.in.Metadata,
		CreatedAt:    r.startedAt,
		FinishedAt:   now,
	}
	if r.prepared {
		rec.RenderedMessages = r.prep.Messages
		if r.in.Text == "" {
			rec.Input.Variables = r.prep.Variables
		}
	}
	var err error
	if len(r.toolCalls) > 0 {
		if rec.ToolCalls, err = json.Marshal(r.toolCalls); err != nil {
			return rec, fmt.Errorf("prompt run: encode tool calls: %w", err)
		}
	}
	if r.cur.Status != run.StatusFailed || r.cur.Text != "" {
		out := activities.RunOutput{Text: r.cur.Text, Parsed: r.cur.Parsed}
		if len(r.cur.FunctionCalls) > 0 {
			out.FunctionCalls = r.cur.FunctionCalls
		}
		if len(r.cur.ApprovalRequests) > 0 {
			out.ApprovalRequests = r.cur.ApprovalRequests
		}
		if r.cur.Turn > 1 {
			out.Turns = r.cur.Turn
		}
		if rec.Output, err = json.Marshal(out); err != nil {
			return rec, fmt.Errorf("prompt run: encode output: %w", err)
		}
	}
	runErr := r.cur.Error
	if r.runErr != nil {
		runErr = r.runErr
	}
	if runErr != nil {
		if rec.Error, err = json.Marshal(runErr); err != nil {
			return rec, fmt.Errorf("prompt run: encode error: %w", err)
		}
	}
	return rec, nil
}

// callError turns a failed model call into the run's error; ok is false for
// a failure of the worker's own infrastructure, which fails the workflow.
func callError(err error, model string) (e *run.Error, ok bool) {
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		return &run.Error{Code: run.UpstreamUnavailable, Message: fmt.Sprintf("model deployment %q did not answer in time", model)}, true
	}
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return nil, false
	}
	f := run.FailureOf(appErr)
	switch appErr.Type() {
	case run.ModelNotFound:
		return &run.Error{Code: run.ModelNotFound, Message: f.Message}, true
	case run.UpstreamRejected, run.UpstreamUnavailable:
		msg := fmt.Sprintf("model deployment %q: %s", model, f.Message)
		if f.Status > 0 {
			msg = fmt.Sprintf("model deployment %q answered %d: %s", model, f.Status, f.Message)
		}
		return &run.Error{Code: appErr.Type(), Message: msg, UpstreamStatus: f.Status}, true
	}
	return nil, false
}
