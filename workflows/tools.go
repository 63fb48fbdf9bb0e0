package workflows

// Tool calls: listing the connections' tools, running the calls a reply
// makes, pausing for approvals and function outputs, and feeding results back.

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runstream"
)

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
	in := activities.ResolveToolsInput{ProjectID: r.in.ProjectID, Tools: r.prep.ConnectionTools, Taken: taken}
	if r.recordedTools() {
		in.RecordedFrom = r.in.ReplayOf
	}
	var res activities.ResolveToolsResult
	err := workflow.ExecuteActivity(toolOptions(ctx, ResolveToolsTimeout), a.ResolveTools, in).Get(ctx, &res)
	if err != nil {
		r.fail(&run.Error{Code: run.ToolsUnavailable, Message: toolErrorText(err)})
		return nil
	}
	r.tools = append(slices.Clip(r.tools), res.Tools...)
	r.listings = res.Listings
	r.routes = map[string]activities.ToolRoute{}
	for _, rt := range res.Routes {
		r.routes[rt.Name] = rt
	}
	return nil
}

// recordedTools says that the run is a replay whose tool calls are
// answered from the replayed run's record (run.ReplayToolsRecorded): no
// tool is listed or called, and nothing waits for approval.
func (r *promptRun) recordedTools() bool {
	return r.in.ReplayOf != "" && r.in.ReplayTools == run.ReplayToolsRecorded
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
		if route.RequireApproval && !r.recordedTools() {
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

// toolLabel names a tool call in the Temporal UI: the tool, and the
// connection it belongs to.
func toolLabel(tc *run.ToolCall) string {
	if tc.ServerLabel == "" {
		return tc.Name
	}
	return tc.Name + " (" + tc.ServerLabel + ")"
}

// withSummary sets the one-line summary the Temporal UI shows for the
// activities started with ctx (Temporal's user metadata; it does not
// take part in replay).
func withSummary(ctx workflow.Context, summary string) workflow.Context {
	o := workflow.GetActivityOptions(ctx)
	o.Summary = summary
	return workflow.WithActivityOptions(ctx, o)
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
		if r.recordedTools() {
			futures[i] = workflow.ExecuteActivity(withSummary(actx, "recorded tool "+toolLabel(tc)), a.RecordedToolCall, r.recordedCall(conn, tc))
			continue
		}
		futures[i] = workflow.ExecuteActivity(withSummary(actx, "tool "+toolLabel(tc)), a.CallTool, activities.CallToolInput{
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

// recordedCall is the input that answers tc, a replay's call, from the
// replayed run's record: the next occurrence of its tool and arguments.
func (r *promptRun) recordedCall(conn uuid.UUID, tc *run.ToolCall) activities.RecordedToolCallInput {
	if r.replayCalls == nil {
		r.replayCalls = map[string]int{}
	}
	key := activities.CallKey(tc.ConnectionID, tc.Name, tc.Arguments)
	r.replayCalls[key]++
	return activities.RecordedToolCallInput{
		ProjectID: r.in.ProjectID, ReplayOf: r.in.ReplayOf, ConnectionID: conn,
		Tool: tc.Name, Arguments: tc.Arguments, Occurrence: r.replayCalls[key],
	}
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
	//workflowcheck:ignore copying one map into another does not depend on order
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
