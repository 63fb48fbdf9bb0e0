package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/runstream"
)

// ErrUpstreamUnavailable is the failure type of a run whose model
// deployment could not be reached, timed out, or kept answering 408, 429 or
// 5xx through every attempt: the upstream's fault, not the caller's (a 502,
// or a 429 when RunError.UpstreamStatus says the last answer was 429). It
// sits with the contract's Err* types.
const ErrUpstreamUnavailable = "UpstreamUnavailable"

// MaxModelCalls is the hard cap on a run's model calls, whatever the
// document allows; reaching it fails the run with ErrStepLimit.
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

// finishLength is the finish reason of a reply cut off by max_tokens.
const finishLength = "length"

// PromptRun executes one run of one pinned prompt version: prepare (validate
// the input, render the messages), call the model, check a structured reply
// and repair it while the document allows, record the run. A run the caller
// or the model got wrong still completes, with Status failed and Error set
// (invalid input, a template that fails, the upstream's 4xx, an output that
// stays invalid); the workflow itself fails only when the worker's own
// infrastructure does, such as the database after every retry.
func PromptRun(ctx workflow.Context, in PromptRunInput) (PromptRunOutput, error) {
	r := &promptRun{in: in, out: PromptRunOutput{StartedAt: workflow.Now(ctx)}}
	if err := r.prepare(ctx); err != nil {
		return PromptRunOutput{}, err
	}
	if r.prepared {
		if err := r.callLoop(ctx); err != nil {
			return PromptRunOutput{}, err
		}
	}
	return r.finish(ctx)
}

// promptRun is the state of one run as the workflow advances it.
type promptRun struct {
	in       PromptRunInput
	out      PromptRunOutput
	prepared bool
	prep     activities.PrepareRunResult
	calls    []activities.ModelCall
}

func localOptions(ctx workflow.Context, nonRetryable ...string) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: localStepTimeout,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3, NonRetryableErrorTypes: nonRetryable},
	})
}

// prepare runs PrepareRun. A typed failure fails the run; any other error
// fails the workflow.
func (r *promptRun) prepare(ctx workflow.Context) error {
	var a *activities.Activities
	ctx = localOptions(ctx, ErrInvalidInput, ErrInvalidPrompt, ErrRender)
	err := workflow.ExecuteLocalActivity(ctx, a.PrepareRun, activities.PrepareRunInput{
		Document:     r.in.Document,
		Text:         r.in.Text,
		Variables:    r.in.Variables,
		InputItems:   r.in.InputItems,
		Instructions: r.in.Instructions,
	}).Get(ctx, &r.prep)
	if err == nil {
		r.prepared = true
		r.out.Model = r.prep.Deployment
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case ErrInvalidInput, ErrInvalidPrompt, ErrRender:
			f := failureOf(appErr)
			r.fail(&RunError{Code: appErr.Type(), Message: f.Message, Param: f.Param})
			return nil
		}
	}
	return fmt.Errorf("prompt run: prepare: %w", err)
}

// callLoop calls the model until a reply ends the run: tool calls, a reply
// cut off, a valid reply, or an invalid one once the repairs are used up.
func (r *promptRun) callLoop(ctx workflow.Context) error {
	var a *activities.Activities
	p := r.prep
	limit := 1
	if p.AllowMultipleCalls {
		limit += max(p.LLMRetryLimit, 0)
	}
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
			NonRetryableErrorTypes: []string{ErrUpstreamRejected, ErrModelNotFound},
		},
	})
	messages := p.Messages
	for n := 1; ; n++ {
		call := activities.CallModelInput{
			ProjectID:      r.in.ProjectID,
			Deployment:     p.Deployment,
			Messages:       messages,
			ModelParams:    p.ModelParams,
			ResponseFormat: p.ResponseFormat,
			Tools:          p.Tools,
		}
		if r.streaming() {
			call.Stream, call.StreamSubject, call.Call = true, r.in.StreamSubject, n
		}
		var res activities.CallModelResult
		err := workflow.ExecuteActivity(ctx, a.CallModel, call).Get(ctx, &res)
		if err != nil {
			runErr, ok := callError(err, p.Deployment)
			if !ok {
				return fmt.Errorf("prompt run: call model: %w", err)
			}
			r.calls = append(r.calls, activities.ModelCall{Call: n, Error: runErr.Message})
			r.fail(runErr)
			return nil
		}
		r.addCall(n, res)
		r.out.Text = res.Content

		switch {
		case len(res.ToolCalls) > 0:
			// The caller runs its functions and continues with their
			// outputs as input items; the reply is not final, so it is not
			// checked.
			for _, c := range res.ToolCalls {
				r.out.FunctionCalls = append(r.out.FunctionCalls, FunctionCall{CallID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
			}
			r.out.Status = StatusCompleted
			return nil
		case res.FinishReason == finishLength:
			r.out.Status = StatusIncomplete
			return nil
		case !p.StructuredOutput:
			r.out.Status = StatusCompleted
			return nil
		}

		var check activities.CheckOutputResult
		lctx := localOptions(ctx, ErrInvalidPrompt)
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
			r.out.Status = StatusCompleted
			r.out.Parsed = check.Parsed
			return nil
		}
		switch {
		case !p.AllowMultipleCalls:
			r.fail(&RunError{Code: ErrInvalidOutput, Message: check.Message})
			return nil
		case n >= limit:
			r.fail(&RunError{Code: ErrInvalidOutput, Message: fmt.Sprintf("%s (still invalid after %d repairs)", check.Message, n-1)})
			return nil
		case n >= MaxModelCalls:
			r.fail(&RunError{Code: ErrStepLimit, Message: fmt.Sprintf("the run reached its limit of %d model calls", MaxModelCalls)})
			return nil
		}
		// A new slice each time: the calls' inputs must not share one.
		messages = append(slices.Clip(messages),
			activities.ChatMessage{Role: "assistant", Content: res.Content},
			activities.ChatMessage{Role: "user", Content: RepairMessage(check)},
		)
	}
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

// streaming reports whether the caller watches the run's stream.
func (r *promptRun) streaming() bool { return r.in.StreamSubject != "" }

// publish sends one of the run's own events to a streaming caller (see
// package runstream): the verdict on a structured reply, which tells the
// gateway whether the text it holds is the output or will be repaired. A
// run that does not stream publishes nothing: its history is the one it
// had before streaming existed, which the replay test holds it to.
// Streaming is best effort: a failure to publish does not fail the run.
func (r *promptRun) publish(ctx workflow.Context, ev runstream.Event) {
	if !r.streaming() {
		return
	}
	var a *activities.Activities
	lctx := localOptions(ctx)
	err := workflow.ExecuteLocalActivity(lctx, a.PublishRunEvent, activities.PublishRunEventInput{Subject: r.in.StreamSubject, Event: ev}).Get(lctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("run event not published", "type", ev.Type, "err", err)
	}
}

func (r *promptRun) addCall(n int, res activities.CallModelResult) {
	r.calls = append(r.calls, activities.ModelCall{
		Call: n, Attempt: res.Attempt, LatencyMS: res.LatencyMS, Usage: res.Usage,
		FinishReason: res.FinishReason, Model: res.Model,
	})
	r.out.Usage.InputTokens += res.Usage.PromptTokens
	r.out.Usage.OutputTokens += res.Usage.CompletionTokens
	r.out.Usage.TotalTokens += res.Usage.TotalTokens
}

func (r *promptRun) fail(e *RunError) {
	r.out.Status = StatusFailed
	r.out.Error = e
}

// finish records the run and returns its output.
func (r *promptRun) finish(ctx workflow.Context) (PromptRunOutput, error) {
	r.out.ModelCalls = len(r.calls)
	r.out.FinishedAt = workflow.Now(ctx)

	rec := activities.RunRecord{
		ID:            r.in.ResponseID,
		ProjectID:     r.in.ProjectID,
		PromptID:      r.in.PromptID,
		PromptVersion: r.in.PromptVersion,
		Deployment:    r.in.Deployment,
		Model:         r.out.Model,
		Source:        r.in.Source,
		Status:        r.out.Status,
		Input: activities.RunInput{
			Text:         r.in.Text,
			Variables:    r.in.Variables,
			InputItems:   r.in.InputItems,
			Instructions: r.in.Instructions,
		},
		ModelCalls:   r.calls,
		InputTokens:  r.out.Usage.InputTokens,
		OutputTokens: r.out.Usage.OutputTokens,
		LatencyMS:    r.out.FinishedAt.Sub(r.out.StartedAt).Milliseconds(),
		Metadata:     r.in.Metadata,
		CreatedAt:    r.out.StartedAt,
		FinishedAt:   r.out.FinishedAt,
	}
	if r.prepared {
		rec.RenderedMessages = r.prep.Messages
		if r.in.Text == "" {
			rec.Input.Variables = r.prep.Variables
		}
	}
	var err error
	if r.out.Status != StatusFailed || r.out.Text != "" {
		out := struct {
			Text          string          `json:"text"`
			Parsed        json.RawMessage `json:"parsed,omitempty"`
			FunctionCalls []FunctionCall  `json:"function_calls,omitempty"`
		}{r.out.Text, r.out.Parsed, r.out.FunctionCalls}
		if rec.Output, err = json.Marshal(out); err != nil {
			return PromptRunOutput{}, fmt.Errorf("prompt run: encode output: %w", err)
		}
	}
	if r.out.Error != nil {
		if rec.Error, err = json.Marshal(r.out.Error); err != nil {
			return PromptRunOutput{}, fmt.Errorf("prompt run: encode error: %w", err)
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
		return PromptRunOutput{}, fmt.Errorf("prompt run: record run: %w", err)
	}
	return r.out, nil
}

// callError turns a failed model call into the run's error; ok is false for
// a failure of the worker's own infrastructure, which fails the workflow.
func callError(err error, model string) (e *RunError, ok bool) {
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		return &RunError{Code: ErrUpstreamUnavailable, Message: fmt.Sprintf("model deployment %q did not answer in time", model)}, true
	}
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return nil, false
	}
	f := failureOf(appErr)
	switch appErr.Type() {
	case ErrModelNotFound:
		return &RunError{Code: ErrModelNotFound, Message: f.Message}, true
	case ErrUpstreamRejected, ErrUpstreamUnavailable:
		msg := fmt.Sprintf("model deployment %q: %s", model, f.Message)
		if f.Status > 0 {
			msg = fmt.Sprintf("model deployment %q answered %d: %s", model, f.Status, f.Message)
		}
		return &RunError{Code: appErr.Type(), Message: msg}, true
	}
	return nil, false
}

func failureOf(appErr *temporal.ApplicationError) activities.Failure {
	var f activities.Failure
	if appErr.HasDetails() {
		_ = appErr.Details(&f)
	}
	if f.Message == "" {
		f.Message = "the run failed"
	}
	return f
}

var upstreamStatus = regexp.MustCompile(`^model deployment "[^"]*" answered ([0-9]{3}): `)

// UpstreamStatus is the HTTP status the model deployment answered with, for
// an ErrUpstreamRejected or ErrUpstreamUnavailable error; 0 when there was
// none (unreachable, timed out) or e is another error.
func (e *RunError) UpstreamStatus() int {
	if e == nil || (e.Code != ErrUpstreamRejected && e.Code != ErrUpstreamUnavailable) {
		return 0
	}
	m := upstreamStatus.FindStringSubmatch(e.Message)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
