package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
)

// CallModelInput is one chat completion request of a run, before the
// deployment's model name and defaults are applied.
type CallModelInput struct {
	ProjectID uuid.UUID `json:"project_id"`
	// Deployment names the project's model deployment to call.
	Deployment string        `json:"deployment"`
	Messages   []ChatMessage `json:"messages"`
	// ModelParams are the document's parameters (a JSON object); they win
	// over the deployment's defaults.
	ModelParams json.RawMessage `json:"model_params,omitempty"`
	// ResponseFormat, when set, replaces any response_format of the
	// parameters.
	ResponseFormat json.RawMessage `json:"response_format,omitempty"`
	Tools          []ChatTool      `json:"tools,omitempty"`
	// Stream and StreamSubject are for streaming a call's deltas to the
	// gateway. Calls are made whole for now; both are carried so that the
	// run's history already says what was asked for.
	Stream        bool   `json:"stream,omitempty"`
	StreamSubject string `json:"stream_subject,omitempty"`
}

// CallModelResult is the model's reply.
type CallModelResult struct {
	// Content is the assistant's text; empty when it only calls tools.
	Content      string     `json:"content"`
	ToolCalls    []ToolCall `json:"tool_calls,omitempty"`
	FinishReason string     `json:"finish_reason"`
	Usage        ModelUsage `json:"usage"`
	// LatencyMS is the time from sending the request to reading the reply.
	LatencyMS int64 `json:"latency_ms"`
	// Model is the model the upstream says answered.
	Model string `json:"model"`
	// Attempt is the activity attempt that got this reply (1 for the first).
	Attempt int32 `json:"attempt"`
}

// maxReplyBytes bounds what is read of an upstream reply.
const maxReplyBytes = 32 << 20

// CallModel sends one chat completion to the project's model deployment:
// the deployment's upstream model replaces the model name, its default
// parameters fill what the document leaves out, and its provider key goes
// as a Bearer token. It makes exactly one HTTP request; retries are the
// workflow's retry policy. Failures:
//   - ErrModelNotFound (non-retryable): no model deployment of that name;
//   - ErrUpstreamRejected (non-retryable): a 4xx other than 408 and 429,
//     Failure carrying the status and the upstream's message;
//   - ErrUpstreamUnavailable (retryable): unreachable, 408, 429, 5xx or an
//     unreadable reply; a Retry-After header sets the next retry's delay;
//   - ErrProviderKey (non-retryable), or a plain error when the database is
//     unreachable (retryable).
func (a *Activities) CallModel(ctx context.Context, in CallModelInput) (CallModelResult, error) {
	defer keepAlive(ctx)()
	d, err := a.deployment(ctx, in.ProjectID, in.Deployment)
	if err != nil {
		return CallModelResult{}, err
	}
	body, err := chatBody(d, in)
	if err != nil {
		return CallModelResult{}, fmt.Errorf("call model: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.chatURL, bytes.NewReader(body))
	if err != nil {
		return CallModelResult{}, temporal.NewNonRetryableApplicationError("call model: "+err.Error(), ErrModelNotFound, nil,
			Failure{Message: fmt.Sprintf("model deployment %q has an unusable base URL", in.Deployment)})
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if d.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+d.apiKey)
	}

	hc := a.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return CallModelResult{}, temporal.NewApplicationError("call model: "+err.Error(), ErrUpstreamUnavailable,
			Failure{Message: "the model deployment could not be reached"})
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	latency := time.Since(start).Milliseconds()
	if err != nil {
		return CallModelResult{}, temporal.NewApplicationError("call model: read reply: "+err.Error(), ErrUpstreamUnavailable,
			Failure{Message: "the model deployment's reply broke off", Status: resp.StatusCode})
	}

	if resp.StatusCode >= 300 {
		f := Failure{Status: resp.StatusCode, Message: upstreamMessage(resp.StatusCode, raw)}
		msg := fmt.Sprintf("call model: deployment %q answered %d: %s", in.Deployment, resp.StatusCode, f.Message)
		if retryableStatus(resp.StatusCode) {
			activity.GetLogger(ctx).Warn("model deployment failed", "deployment", in.Deployment, "status", resp.StatusCode, "latency_ms", latency)
			return CallModelResult{}, temporal.NewApplicationErrorWithOptions(msg, ErrUpstreamUnavailable, temporal.ApplicationErrorOptions{
				Details:        []any{f},
				NextRetryDelay: retryAfter(resp.Header.Get("Retry-After")),
			})
		}
		return CallModelResult{}, temporal.NewNonRetryableApplicationError(msg, ErrUpstreamRejected, nil, f)
	}

	var cc chatCompletion
	if err := json.Unmarshal(raw, &cc); err != nil || len(cc.Choices) == 0 {
		why := "no choices"
		if err != nil {
			why = err.Error()
		}
		return CallModelResult{}, temporal.NewApplicationError("call model: unreadable reply: "+why, ErrUpstreamUnavailable,
			Failure{Message: "the model deployment sent a reply that is not a chat completion", Status: resp.StatusCode})
	}
	choice := cc.Choices[0]
	out := CallModelResult{
		ToolCalls:    choice.Message.ToolCalls,
		FinishReason: choice.FinishReason,
		LatencyMS:    latency,
		Model:        cc.Model,
		Attempt:      activity.GetInfo(ctx).Attempt,
	}
	if choice.Message.Content != nil {
		out.Content = *choice.Message.Content
	}
	if cc.Usage != nil {
		out.Usage = *cc.Usage
		if out.Usage.TotalTokens == 0 {
			out.Usage.TotalTokens = out.Usage.PromptTokens + out.Usage.CompletionTokens
		}
	}
	for i := range out.ToolCalls {
		if out.ToolCalls[i].Type == "" {
			out.ToolCalls[i].Type = "function"
		}
	}
	return out, nil
}

// chatCompletion is the part of a chat.completion a run uses.
type chatCompletion struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   *string    `json:"content"`
			ToolCalls []ToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *ModelUsage `json:"usage"`
}

// chatBody is the request the upstream gets: the deployment's defaults,
// then the document's parameters over them, then what the run sets.
func chatBody(d *modelDeployment, in CallModelInput) ([]byte, error) {
	fields := make(map[string]json.RawMessage, len(d.defaults)+8)
	for k, v := range d.defaults {
		fields[k] = v
	}
	if len(in.ModelParams) > 0 && !bytes.Equal(bytes.TrimSpace(in.ModelParams), []byte("null")) {
		var params map[string]json.RawMessage
		if err := json.Unmarshal(in.ModelParams, &params); err != nil {
			return nil, fmt.Errorf("model params: %w", err)
		}
		for k, v := range params {
			fields[k] = v
		}
	}
	// Whole replies only, for now; see CallModelInput.Stream.
	delete(fields, "stream")
	delete(fields, "stream_options")

	var err error
	set := func(k string, v any) {
		if err != nil {
			return
		}
		fields[k], err = json.Marshal(v)
	}
	set("model", d.upstreamModel)
	set("messages", in.Messages)
	if len(in.ResponseFormat) > 0 {
		fields["response_format"] = in.ResponseFormat
	}
	if len(in.Tools) > 0 {
		set("tools", in.Tools)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(fields)
}

// retryableStatus reports whether an upstream status may pass on retry:
// timeouts, rate limits and server errors; also a redirect the client did
// not follow, which says nothing about the request.
func retryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500 || status < 400
}

// maxRetryAfter caps the delay an upstream can ask for, so a bad header
// cannot park a run.
const maxRetryAfter = time.Minute

// retryAfter reads a Retry-After header (seconds or an HTTP date); 0 means
// none, and the retry policy's backoff applies.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = time.Until(t)
	}
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

// maxUpstreamMessage bounds the upstream's message carried into a run's
// error.
const maxUpstreamMessage = 1000

// upstreamMessage is the message of an OpenAI error envelope, or the
// status text when the body is not one. A body that is not an envelope
// (an HTML error page, say) is never passed on.
func upstreamMessage(status int, body []byte) string {
	var env struct {
		Error json.RawMessage `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &env) == nil && len(env.Error) > 0 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(env.Error, &e) == nil {
			msg = e.Message
		} else {
			_ = json.Unmarshal(env.Error, &msg) // some servers send {"error": "text"}
		}
	}
	msg = strings.TrimSpace(msg)
	if msg == "" {
		msg = http.StatusText(status)
	}
	if len(msg) > maxUpstreamMessage {
		msg = strings.ToValidUTF8(msg[:maxUpstreamMessage], "") + "…"
	}
	return msg
}

// modelDeployment is a model deployment ready to call.
type modelDeployment struct {
	chatURL       string
	upstreamModel string
	apiKey        string
	defaults      map[string]json.RawMessage
	loadedAt      time.Time
}

type deploymentKey struct {
	project uuid.UUID
	name    string
}

// deploymentCache keeps resolved model deployments for a few seconds, so a
// run's calls and concurrent runs do not each read the database and open
// the key. Absent deployments are not kept: a deployment created a moment
// ago must work. The zero value is ready to use.
type deploymentCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[deploymentKey]*modelDeployment
}

func (c *deploymentCache) get(k deploymentKey, now time.Time) *modelDeployment {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.m[k]
	ttl := c.ttl
	if ttl <= 0 {
		ttl = DefaultDeploymentTTL
	}
	if d == nil || now.Sub(d.loadedAt) >= ttl {
		return nil
	}
	return d
}

func (c *deploymentCache) put(k deploymentKey, d *modelDeployment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[deploymentKey]*modelDeployment{}
	}
	c.m[k] = d
}

// deployment resolves a project's model deployment by name.
func (a *Activities) deployment(ctx context.Context, project uuid.UUID, name string) (*modelDeployment, error) {
	k := deploymentKey{project, name}
	now := time.Now()
	if d := a.deployments.get(k, now); d != nil {
		return d, nil
	}
	if a.Pool == nil {
		return nil, errors.New("call model: no database configured")
	}
	row, err := dbsqlc.New(a.Pool).GetDeploymentByName(ctx, dbsqlc.GetDeploymentByNameParams{ProjectID: project, Name: name})
	notFound := func() error {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("call model: no model deployment %q in project %s", name, project), ErrModelNotFound, nil,
			Failure{Message: fmt.Sprintf("the prompt's model deployment %q does not exist in this project", name)})
	}
	switch {
	case db.IsNoRows(err):
		return nil, notFound()
	case err != nil:
		return nil, fmt.Errorf("call model: load deployment: %w", err)
	case row.Kind != bud.KindModel:
		return nil, notFound()
	}
	d := &modelDeployment{
		chatURL:       strings.TrimRight(row.BaseURL, "/") + "/chat/completions",
		upstreamModel: row.UpstreamModel,
		loadedAt:      now,
	}
	if len(row.APIKeySealed) > 0 {
		if a.Box == nil {
			return nil, temporal.NewNonRetryableApplicationError("call model: no secrets box to open provider keys", ErrProviderKey, nil, Failure{Message: "internal error"})
		}
		key, err := a.Box.Open(row.APIKeySealed, row.ID[:])
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("call model: open provider key of deployment %s: %v", row.ID, err), ErrProviderKey, nil, Failure{Message: "internal error"})
		}
		d.apiKey = string(key)
	}
	if len(row.DefaultParams) > 0 {
		if err := json.Unmarshal(row.DefaultParams, &d.defaults); err != nil {
			return nil, fmt.Errorf("call model: default params of deployment %s: %w", row.ID, err)
		}
	}
	a.deployments.put(k, d)
	return d, nil
}
