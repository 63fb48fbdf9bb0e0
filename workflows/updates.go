package workflows

// The run's updates and query: waiting on a turn, continuing a paused run,
// deciding approvals, and reading a turn as it stands.

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud"
	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/run"
)

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
			r.subject, r.eventKey = c.StreamSubject, c.EventKey
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
				r.subject, r.eventKey = "", ""
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
	// The first field in order, so that a problem naming several fields
	// refuses the same way on every replay.
	param := ""
	//workflowcheck:ignore the keys are sorted before use
	if fields := slices.Sorted(maps.Keys(bud.ErrorFields(err))); len(fields) > 0 {
		param = fields[0]
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
