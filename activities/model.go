package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runstream"
)

// CallModelInput is one chat completion request of a run, before the
// deployment's model name and defaults are applied.
type CallModelInput struct {
	ProjectID uuid.UUID `json:"project_id"`
	// Deployment names the project's model deployment to call.
	Deployment string         `json:"deployment"`
	Messages   []chat.Message `json:"messages"`
	// ModelParams are the document's parameters (a JSON object); they win
	// over the deployment's defaults.
	ModelParams json.RawMessage `json:"model_params,omitempty"`
	// ResponseFormat, when set, replaces any response_format of the
	// parameters.
	ResponseFormat json.RawMessage `json:"response_format,omitempty"`
	// StrictReason says why a json_schema ResponseFormat is not strict
	// (PrepareRunResult.StrictReason); the call's record repeats it.
	StrictReason string      `json:"strict_reason,omitempty"`
	Tools        []chat.Tool `json:"tools,omitempty"`
	// Stream asks the model for a stream, whose content is published to
	// StreamSubject (see package runstream) as it arrives, tagged with Call
	// and the activity attempt. The result is the same as without.
	Stream        bool   `json:"stream,omitempty"`
	StreamSubject string `json:"stream_subject,omitempty"`
	// EventKey signs what is published to StreamSubject
	// (run.Input.EventKey); empty, it goes unsigned.
	EventKey string `json:"event_key,omitempty"`
	// Call is the call's number in its run, 1 for the first; set for
	// streaming calls, whose deltas it tells apart.
	Call int `json:"call,omitempty"`
	// Announce, when set, lets this call end its run's first turn itself;
	// see Announcement.
	Announce *Announcement `json:"announce,omitempty"`
}

// CallModelResult is the model's reply.
type CallModelResult struct {
	// Content is the assistant's text; empty when it only calls tools.
	Content      string          `json:"content"`
	ToolCalls    []chat.ToolCall `json:"tool_calls,omitempty"`
	FinishReason string          `json:"finish_reason"`
	Usage        chat.Usage      `json:"usage"`
	// LatencyMS is the time from sending the request to reading the reply.
	LatencyMS int64 `json:"latency_ms"`
	// Model is the model the upstream says answered.
	Model string `json:"model"`
	// UpstreamModel is the model the deployment asked its upstream for.
	UpstreamModel string `json:"upstream_model,omitempty"`
	// Attempt is the activity attempt that got this reply (1 for the first).
	Attempt int32 `json:"attempt"`
	// Recorded says the call ended the first turn itself: the run's row is
	// written with this reply and the turn announced (see Announcement).
	Recorded bool `json:"recorded,omitempty"`
	// Parsed is the structured output of a recorded reply that the call
	// checked (Announcement.Document).
	Parsed json.RawMessage `json:"parsed,omitempty"`
	// Strict, set when the call asked for a json_schema response format,
	// says whether the schema went as strict; StrictReason says why not.
	Strict       *bool  `json:"strict,omitempty"`
	StrictReason string `json:"strict_reason,omitempty"`
}

// EndsTurn reports whether the reply ends its turn as it is, for a prompt
// without structured output, and with which status: a reply that calls no
// tools does, incomplete when the model was cut off at max_tokens. (A
// structured reply that is not cut off still needs its check.)
func (res CallModelResult) EndsTurn() (status string, ok bool) {
	switch {
	case len(res.ToolCalls) > 0:
		return "", false
	case res.FinishReason == "length":
		return run.StatusIncomplete, true
	}
	return run.StatusCompleted, true
}

// AddTo adds the reply to the turn it belongs to: one more model call, its
// usage, and its text as the turn's text.
func (res CallModelResult) AddTo(t *run.Turn) {
	t.ModelCalls++
	t.Usage.Add(res.Usage.PromptTokens, res.Usage.CompletionTokens, res.Usage.TotalTokens)
	t.Text = res.Content
}

// CallModel sends one chat completion to the project's model deployment:
// the deployment's upstream model replaces the model name, its default
// parameters fill what the document leaves out, and its provider key goes
// as a Bearer token. It makes exactly one HTTP request; retries are the
// workflow's retry policy. With in.Stream the request streams, and each
// piece of content is published as it arrives (see CallModelInput.Stream);
// a failed publish is logged, never fatal. Failures:
//   - run.ModelNotFound (non-retryable): no model deployment of that name;
//   - run.UpstreamRejected (non-retryable): a 4xx other than 408 and 429,
//     run.Failure carrying the status and the upstream's message, or an
//     address the egress policy refuses;
//   - run.UpstreamUnavailable (retryable): unreachable, 408, 429, 5xx, an
//     unreadable reply or a stream that broke off; a Retry-After header
//     sets the next retry's delay;
//   - run.ProviderKey (non-retryable), or a plain error when the database is
//     unreachable (retryable).
//
// With an Announcement the call may also end its run's first turn (see
// Announcement).
func (a *Activities) CallModel(ctx context.Context, in CallModelInput) (CallModelResult, error) {
	defer keepAlive(ctx)()
	if in.Announce != nil {
		return firstTurn{a, in.Announce}.call(ctx, in)
	}
	return a.callModel(ctx, in)
}

// callModel makes the call (see CallModel).
func (a *Activities) callModel(ctx context.Context, in CallModelInput) (CallModelResult, error) {
	attempt := activity.GetInfo(ctx).Attempt
	d, err := a.modelDeployment(ctx, in.ProjectID, in.Deployment)
	if err != nil {
		return CallModelResult{}, err
	}
	ticket, err := a.admitCall(ctx, d)
	if err != nil {
		return CallModelResult{}, err
	}
	tokens := 0
	defer func() { ticket.Done(tokens) }()
	var (
		pub       *runstream.Publisher
		delta     func(string)
		published bool
	)
	if in.Stream {
		if pub = runstream.NewPublisher(a.NATS, in.StreamSubject, in.EventKey, in.Call, attempt); pub != nil {
			delta = func(s string) {
				published = true
				pub.Delta(s)
			}
		}
	}
	start := time.Now()
	reply, err := chat.Client{HTTP: a.HTTPClient}.Call(ctx, chat.Endpoint{URL: d.ChatURL, APIKey: d.APIKey}, chat.Request{
		Model:          d.UpstreamModel,
		Defaults:       d.Defaults,
		Params:         in.ModelParams,
		Messages:       in.Messages,
		ResponseFormat: in.ResponseFormat,
		Tools:          in.Tools,
		Stream:         in.Stream,
	}, delta)
	if err != nil {
		if published {
			// What this attempt did publish is then ahead of any retry's.
			_ = pub.Flush(ctx)
		}
		return CallModelResult{}, callFailure(ctx, in.Deployment, err, time.Since(start))
	}
	tokens = int(reply.Usage.PromptTokens + reply.Usage.CompletionTokens)
	out := CallModelResult{
		Content:       reply.Content,
		ToolCalls:     reply.ToolCalls,
		FinishReason:  reply.FinishReason,
		Usage:         reply.Usage,
		LatencyMS:     reply.Latency.Milliseconds(),
		Model:         reply.Model,
		UpstreamModel: d.UpstreamModel,
		Attempt:       attempt,
	}
	if strict, ok := schemaStrictness(in.ResponseFormat); ok {
		out.Strict = &strict
		if !strict {
			out.StrictReason = in.StrictReason
		}
	}
	if err := pub.Done(ctx, out.FinishReason); err != nil {
		activity.GetLogger(ctx).Warn("stream deltas not published", "subject", in.StreamSubject, "err", err)
	}
	return out, nil
}

// modelDeployment resolves the project's model deployment called name.
func (a *Activities) modelDeployment(ctx context.Context, project uuid.UUID, name string) (*deployment.Deployment, error) {
	if a.deployments == nil {
		return nil, errors.New("call model: no database configured")
	}
	d, err := a.deployments.Model(ctx, project, name)
	switch {
	case errors.Is(err, deployment.ErrNotFound):
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("call model: no model deployment %q in project %s", name, project), run.ModelNotFound, nil,
			run.Failure{Message: fmt.Sprintf("the prompt's model deployment %q does not exist in this project", name)})
	case errors.Is(err, deployment.ErrProviderKey):
		return nil, temporal.NewNonRetryableApplicationError("call model: "+err.Error(), run.ProviderKey, nil, run.Failure{Message: "internal error"})
	case err != nil:
		return nil, fmt.Errorf("call model: %w", err)
	}
	return d, nil
}

// callFailure is the activity error of a failed call to the deployment
// called name, which took latency: a *chat.Error becomes the run's failure
// type, retryable as the chat error says, with the delay the upstream asked
// for; any other error is a plain (retryable) one.
func callFailure(ctx context.Context, name string, err error, latency time.Duration) error {
	var ce *chat.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("call model: %w", err)
	}
	f := run.Failure{Status: ce.Status, Message: ce.Message}
	switch ce.Kind {
	case chat.InvalidURL:
		return temporal.NewNonRetryableApplicationError("call model: "+ce.Error(), run.ModelNotFound, nil,
			run.Failure{Message: fmt.Sprintf("model deployment %q has an unusable base URL", name)})
	case chat.Refused:
		return temporal.NewNonRetryableApplicationError("call model: "+ce.Error(), run.UpstreamRejected, nil,
			run.Failure{Message: fmt.Sprintf("model deployment %q: its address is refused by the egress policy", name)})
	case chat.ErrorStatus:
		msg := fmt.Sprintf("call model: deployment %q answered %d: %s", name, ce.Status, ce.Message)
		if !ce.Retryable() {
			return temporal.NewNonRetryableApplicationError(msg, run.UpstreamRejected, nil, f)
		}
		activity.GetLogger(ctx).Warn("model deployment failed", "deployment", name, "status", ce.Status, "latency_ms", latency.Milliseconds())
		return temporal.NewApplicationErrorWithOptions(msg, run.UpstreamUnavailable, temporal.ApplicationErrorOptions{
			Details:        []any{f},
			NextRetryDelay: ce.RetryAfter,
		})
	}
	return temporal.NewApplicationError("call model: "+ce.Error(), run.UpstreamUnavailable, f)
}

// schemaStrictness reads the strict flag of a json_schema response format;
// ok is false for any other format, or none.
func schemaStrictness(responseFormat json.RawMessage) (strict, ok bool) {
	var rf struct {
		Type       string `json:"type"`
		JSONSchema struct {
			Strict bool `json:"strict"`
		} `json:"json_schema"`
	}
	if len(responseFormat) == 0 || json.Unmarshal(responseFormat, &rf) != nil || rf.Type != "json_schema" {
		return false, false
	}
	return rf.JSONSchema.Strict, true
}
