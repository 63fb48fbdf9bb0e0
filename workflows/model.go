package workflows

// Model calls: the loop of calls, checks and repairs that ends a turn.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/customrule"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runstream"
)

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

// callLoop calls the model until a reply ends the turn: a pause for
// function outputs or approvals, a reply cut off, a valid reply, or an
// invalid one once the repairs are used up.
func (r *promptRun) callLoop(ctx workflow.Context) error {
	calls := modelCalls{local: r.in.Batch}
	for {
		if len(r.calls) >= MaxModelCalls {
			r.fail(stepLimit())
			return nil
		}
		n := len(r.calls) + 1
		call, err := r.callInput(ctx, n)
		if err != nil {
			return err
		}
		var res activities.CallModelResult
		if err := calls.call(ctx, call).Get(ctx, &res); err != nil {
			return r.callFailed(n, err)
		}
		r.addCall(n, res)
		r.recorded = res.Recorded

		switch status, ends := res.EndsTurn(); {
		case !ends:
			more, err := r.toolsCalled(ctx, n, res)
			if err != nil || !more {
				return err
			}
			continue
		case status == run.StatusIncomplete || !r.prep.StructuredOutput:
			r.cur.Status = status
			return nil
		case res.Recorded:
			// The call checked the reply and ended the run with it.
			r.cur.Status, r.cur.Parsed = run.StatusCompleted, res.Parsed
			return nil
		}
		repair, err := r.checkReply(ctx, n, res)
		if err != nil || !repair {
			return err
		}
	}
}

// modelCalls is how a run calls its model. By default each call is an
// activity: a task of its own that any worker may take, retried by the
// server, heartbeating so that a dead worker is noticed within seconds.
// A batch run (run.Input.Batch) calls it as a local activity instead, in
// the worker that runs the workflow: a run of one model call then ends in
// a single workflow task, with no activity task and about half the
// server's work, which is what bounds an evaluation's throughput. What it
// gives up: a call whose worker dies is made again from the start when
// another worker replays the workflow task (no heartbeat), and a call that
// waits long holds the workflow task open, which the SDK extends.
type modelCalls struct{ local bool }

// call starts one model call, with the timeouts and retry policy of
// either kind: the upstream's refusals and a missing deployment are
// final, anything else is retried with backoff.
func (m modelCalls) call(ctx workflow.Context, in activities.CallModelInput) workflow.Future {
	var a *activities.Activities
	retry := &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        30 * time.Second,
		MaximumAttempts:        CallModelAttempts,
		NonRetryableErrorTypes: []string{run.UpstreamRejected, run.ModelNotFound},
	}
	// What the Temporal UI shows for the call (user metadata, which does
	// not take part in replay).
	summary := "model " + in.Deployment
	if m.local {
		ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout: CallModelTimeout,
			RetryPolicy:         retry,
			Summary:             summary,
		})
		return workflow.ExecuteLocalActivity(ctx, a.CallModel, in)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		Summary:             summary,
		StartToCloseTimeout: CallModelTimeout,
		// A model call can take minutes; the heartbeat lets the server see
		// within seconds that its worker died, and retry it elsewhere.
		HeartbeatTimeout: CallModelHeartbeatTimeout,
		RetryPolicy:      retry,
	})
	return workflow.ExecuteActivity(ctx, a.CallModel, in)
}

// callInput is model call n of the run: the conversation so far, streamed
// when a caller watches the turn, and for the first call the announcement
// that lets it end the run itself.
func (r *promptRun) callInput(ctx workflow.Context, n int) (activities.CallModelInput, error) {
	p := r.prep
	call := activities.CallModelInput{
		ProjectID:      r.in.ProjectID,
		Deployment:     p.Deployment,
		Messages:       r.messages,
		ModelParams:    p.ModelParams,
		ResponseFormat: p.ResponseFormat,
		StrictReason:   p.StrictReason,
		Tools:          r.tools,
	}
	if r.streaming() {
		call.Stream, call.StreamSubject, call.EventKey, call.Call = true, r.subject, r.eventKey, n
	}
	an, err := r.firstTurn(ctx, n)
	call.Announce = an
	return call, err
}

// callFailed ends the turn with model call n's failure, when it is the
// upstream's or the deployment's; a failure of the worker's own
// infrastructure fails the workflow.
func (r *promptRun) callFailed(n int, err error) error {
	runErr, ok := callError(err, r.prep.Deployment)
	if !ok {
		return fmt.Errorf("prompt run: call model: %w", err)
	}
	r.calls = append(r.calls, activities.ModelCall{Call: n, Error: runErr.Message})
	r.cur.ModelCalls++
	r.fail(runErr)
	return nil
}

// toolsCalled runs the tools reply res of call n asked for; more is true
// when their results go back to the model in another call, false when the
// turn ends here: paused, or a turn of one model call, whose calls' results
// are in the turn's output.
func (r *promptRun) toolsCalled(ctx workflow.Context, n int, res activities.CallModelResult) (more bool, err error) {
	// A new slice each time: the calls' inputs must not share one.
	r.messages = append(slices.Clip(r.messages), chat.Message{Role: "assistant", Content: res.Content, ToolCalls: res.ToolCalls})
	if err := r.toolStep(ctx, n, res.ToolCalls); err != nil {
		return false, err
	}
	r.cur.Status = run.StatusCompleted
	if r.waiting || !r.prep.AllowMultipleCalls {
		return false, nil
	}
	r.feedBack(nil)
	return true, nil
}

// checkReply checks structured reply res of call n and tells a streaming
// caller the verdict. A valid reply ends the turn; an invalid one fails it,
// or, while the document allows repairs, goes back to the model with its
// problems (repair is true).
func (r *promptRun) checkReply(ctx workflow.Context, n int, res activities.CallModelResult) (repair bool, err error) {
	var a *activities.Activities
	var check activities.CheckOutputResult
	lctx := localOptions(ctx, run.InvalidPrompt)
	if err := workflow.ExecuteLocalActivity(lctx, a.CheckOutput, activities.CheckOutputInput{
		Document:  r.in.Document,
		Content:   res.Content,
		Variables: r.prep.Variables,
	}).Get(lctx, &check); err != nil {
		return false, fmt.Errorf("prompt run: check output: %w", err)
	}
	if check.Valid && len(check.Judge) > 0 {
		if workflow.GetVersion(ctx, judgeRulesChange, workflow.DefaultVersion, 1) == 1 {
			if err := r.judge(ctx, &check); err != nil {
				return false, err
			}
		}
	}
	verdict := runstream.TypeOutputRejected
	if check.Valid {
		verdict = runstream.TypeOutputAccepted
	}
	r.publish(ctx, runstream.Event{Type: verdict, Call: n})
	p := r.prep
	if !check.Valid && len(r.calls) > 0 {
		rejected := check.Problems
		if len(rejected) == 0 {
			rejected = []string{check.Message}
		}
		r.calls[len(r.calls)-1].Rejected = rejected
	}
	switch {
	case check.Valid:
		r.cur.Status = run.StatusCompleted
		r.cur.Parsed = check.Parsed
		return false, nil
	case !p.AllowMultipleCalls:
		r.fail(&run.Error{Code: run.InvalidOutput, Message: check.Message})
		return false, nil
	case r.repairs >= max(p.LLMRetryLimit, 0):
		r.fail(&run.Error{Code: run.InvalidOutput, Message: fmt.Sprintf("%s (still invalid after %d repairs)", check.Message, r.repairs)})
		return false, nil
	case n >= MaxModelCalls:
		r.fail(stepLimit())
		return false, nil
	}
	r.repairs++
	r.messages = append(slices.Clip(r.messages),
		chat.Message{Role: "assistant", Content: res.Content},
		chat.Message{Role: "user", Content: RepairMessage(check)},
	)
	return true, nil
}

// stepLimit is the error of a run that reached MaxModelCalls.
func stepLimit() *run.Error {
	return &run.Error{Code: run.StepLimit, Message: fmt.Sprintf("the run reached its limit of %d model calls", MaxModelCalls)}
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

// addCall keeps call n, which res answered, in the run and its turn.
func (r *promptRun) addCall(n int, res activities.CallModelResult) {
	r.calls = append(r.calls, activities.ModelCallOf(n, res))
	res.AddTo(&r.cur)
	r.usage.Add(res.Usage.PromptTokens, res.Usage.CompletionTokens, res.Usage.TotalTokens)
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
	case run.ModelNotFound, run.RateLimited:
		return &run.Error{Code: appErr.Type(), Message: f.Message}, true
	case run.UpstreamRejected, run.UpstreamUnavailable:
		msg := fmt.Sprintf("model deployment %q: %s", model, f.Message)
		if f.Status > 0 {
			msg = fmt.Sprintf("model deployment %q answered %d: %s", model, f.Status, f.Message)
		}
		return &run.Error{Code: appErr.Type(), Message: msg, UpstreamStatus: f.Status}, true
	}
	return nil, false
}

// judgeRulesChange marks runs that put rules in judge mode to a model.
const judgeRulesChange = "judge-rules"

// judge puts each value of a valid output that a rule in judge mode
// covers to the document's rule deployment, all at once, each call an
// activity of its own. A value the model judges against its rule makes
// the output invalid, with the rule's text and the model's reason, and
// goes to repair like any other problem.
func (r *promptRun) judge(ctx workflow.Context, check *activities.CheckOutputResult) error {
	futures := make([]workflow.Future, len(check.Judge))
	for i, j := range check.Judge {
		futures[i] = modelCalls{}.call(ctx, activities.CallModelInput{
			ProjectID:      r.in.ProjectID,
			Deployment:     r.prep.RuleDeployment,
			Messages:       customrule.JudgeMessages(j.Rule, j.Path, j.Value, check.Parsed),
			ModelParams:    []byte(`{"temperature": 0}`),
			ResponseFormat: customrule.JudgeResponseFormat(),
		})
	}
	var problems []string
	for i, f := range futures {
		j := check.Judge[i]
		var res activities.CallModelResult
		if err := f.Get(ctx, &res); err != nil {
			runErr, ok := callError(err, r.prep.RuleDeployment)
			if !ok {
				return fmt.Errorf("prompt run: judge %s: %w", j.Path, err)
			}
			problems = append(problems, fmt.Sprintf("%s: could not be judged against the rule %q: %s", j.Path, j.Rule, runErr.Message))
			continue
		}
		r.usage.Add(res.Usage.PromptTokens, res.Usage.CompletionTokens, res.Usage.TotalTokens)
		verdict, ok := customrule.ParseJudgement(res.Content)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: could not be judged against the rule %q: the judge's answer was not a verdict", j.Path, j.Rule))
		case !verdict.Verdict:
			problems = append(problems, fmt.Sprintf("%s: must satisfy the rule %q (judged: %s)", j.Path, j.Rule, verdict.Reason))
		}
	}
	if len(problems) > 0 {
		check.Valid, check.Parsed = false, nil
		check.Problems = problems
		check.Message = "the reply does not satisfy the output's rules: " + strings.Join(problems, "; ")
	}
	return nil
}
