package activities

import (
	"bufio"
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
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runstream"
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
	// Stream asks the model for a stream, whose content is published to
	// StreamSubject (see package runstream) as it arrives, tagged with Call
	// and the activity attempt. The result is the same as without.
	Stream        bool   `json:"stream,omitempty"`
	StreamSubject string `json:"stream_subject,omitempty"`
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
	// Recorded says the call ended the first turn itself: the run's row is
	// written with this reply and the turn announced (see Announcement).
	Recorded bool `json:"recorded,omitempty"`
	// Parsed is the structured output of a recorded reply that the call
	// checked (Announcement.Document).
	Parsed json.RawMessage `json:"parsed,omitempty"`
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

// maxReplyBytes bounds what is read of an upstream reply.
const maxReplyBytes = 32 << 20

// CallModel sends one chat completion to the project's model deployment:
// the deployment's upstream model replaces the model name, its default
// parameters fill what the document leaves out, and its provider key goes
// as a Bearer token. It makes exactly one HTTP request; retries are the
// workflow's retry policy. With in.Stream the request streams, and each
// piece of content is published as it arrives (see CallModelInput.Stream);
// a failed publish is logged, never fatal. Failures:
//   - run.ModelNotFound (non-retryable): no model deployment of that name;
//   - run.UpstreamRejected (non-retryable): a 4xx other than 408 and 429,
//     run.Failure carrying the status and the upstream's message;
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
		return CallModelResult{}, temporal.NewNonRetryableApplicationError("call model: "+err.Error(), run.ModelNotFound, nil,
			run.Failure{Message: fmt.Sprintf("model deployment %q has an unusable base URL", in.Deployment)})
	}
	req.Header.Set("Content-Type", "application/json")
	if in.Stream {
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Accept", "application/json")
	}
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
		return CallModelResult{}, temporal.NewApplicationError("call model: "+err.Error(), run.UpstreamUnavailable,
			run.Failure{Message: "the model deployment could not be reached"})
	}
	defer resp.Body.Close()

	var pub *runstream.Publisher
	if in.Stream {
		pub = runstream.NewPublisher(a.NATS, in.StreamSubject, in.Call, attempt)
	}
	var out CallModelResult
	if in.Stream && resp.StatusCode < 300 && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		out, err = readChatStream(resp.Body, pub)
		if err != nil {
			_ = pub.Flush(ctx)
			return CallModelResult{}, err
		}
	} else {
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
		if err != nil {
			return CallModelResult{}, temporal.NewApplicationError("call model: read reply: "+err.Error(), run.UpstreamUnavailable,
				run.Failure{Message: "the model deployment's reply broke off", Status: resp.StatusCode})
		}
		if resp.StatusCode >= 300 {
			return CallModelResult{}, upstreamFailure(ctx, in.Deployment, resp, raw, time.Since(start))
		}
		if out, err = decodeChatCompletion(raw, resp.StatusCode); err != nil {
			return CallModelResult{}, err
		}
		// An upstream that ignored `stream` answered whole: the stream is
		// that one piece.
		pub.Delta(out.Content)
	}
	out.LatencyMS = time.Since(start).Milliseconds()
	out.Attempt = attempt
	if err := pub.Done(ctx, out.FinishReason); err != nil {
		activity.GetLogger(ctx).Warn("stream deltas not published", "subject", in.StreamSubject, "err", err)
	}
	if out.Usage.TotalTokens == 0 {
		out.Usage.TotalTokens = out.Usage.PromptTokens + out.Usage.CompletionTokens
	}
	for i := range out.ToolCalls {
		if out.ToolCalls[i].Type == "" {
			out.ToolCalls[i].Type = "function"
		}
	}
	return out, nil
}

// upstreamFailure is the error of an upstream's answer with status >= 300.
func upstreamFailure(ctx context.Context, deployment string, resp *http.Response, raw []byte, latency time.Duration) error {
	f := run.Failure{Status: resp.StatusCode, Message: upstreamMessage(resp.StatusCode, raw)}
	msg := fmt.Sprintf("call model: deployment %q answered %d: %s", deployment, resp.StatusCode, f.Message)
	if retryableStatus(resp.StatusCode) {
		activity.GetLogger(ctx).Warn("model deployment failed", "deployment", deployment, "status", resp.StatusCode, "latency_ms", latency.Milliseconds())
		return temporal.NewApplicationErrorWithOptions(msg, run.UpstreamUnavailable, temporal.ApplicationErrorOptions{
			Details:        []any{f},
			NextRetryDelay: retryAfter(resp.Header.Get("Retry-After")),
		})
	}
	return temporal.NewNonRetryableApplicationError(msg, run.UpstreamRejected, nil, f)
}

// decodeChatCompletion reads a whole chat.completion.
func decodeChatCompletion(raw []byte, status int) (CallModelResult, error) {
	var cc chatCompletion
	if err := json.Unmarshal(raw, &cc); err != nil || len(cc.Choices) == 0 {
		why := "no choices"
		if err != nil {
			why = err.Error()
		}
		return CallModelResult{}, temporal.NewApplicationError("call model: unreadable reply: "+why, run.UpstreamUnavailable,
			run.Failure{Message: "the model deployment sent a reply that is not a chat completion", Status: status})
	}
	choice := cc.Choices[0]
	out := CallModelResult{
		ToolCalls:    choice.Message.ToolCalls,
		FinishReason: choice.FinishReason,
		Model:        cc.Model,
	}
	if choice.Message.Content != nil {
		out.Content = *choice.Message.Content
	}
	if cc.Usage != nil {
		out.Usage = *cc.Usage
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

// chatChunk is the part of a chat.completion.chunk a run uses.
type chatChunk struct {
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content   *string `json:"content"`
			ToolCalls []struct {
				Index    int              `json:"index"`
				ID       string           `json:"id"`
				Type     string           `json:"type"`
				Function ToolCallFunction `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *ModelUsage `json:"usage"`
	// Error is set by servers that report a failure inside the stream.
	Error json.RawMessage `json:"error"`
}

// readChatStream reads a stream of chat.completion.chunk events, publishing
// each piece of content as soon as it is read, and returns the whole reply
// as a non-streaming call would. A stream that ends before the model
// finished (no finish reason) broke off, and is retryable.
func readChatStream(body io.Reader, pub *runstream.Publisher) (CallModelResult, error) {
	broke := func(why string) error {
		return temporal.NewApplicationError("call model: stream: "+why, run.UpstreamUnavailable,
			run.Failure{Message: "the model deployment's stream broke off", Status: http.StatusOK})
	}
	var (
		out     CallModelResult
		content strings.Builder
		calls   []ToolCall
		done    bool
	)
	sc := bufio.NewScanner(io.LimitReader(body, maxReplyBytes))
	sc.Buffer(make([]byte, 0, 64<<10), maxReplyBytes)
	for !done && sc.Scan() {
		line := sc.Bytes()
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue // blank lines, comments, event names
		}
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, []byte("[DONE]")) {
			done = true
			break
		}
		var ch chatChunk
		if err := json.Unmarshal(data, &ch); err != nil {
			return CallModelResult{}, temporal.NewApplicationError("call model: unreadable stream chunk: "+err.Error(), run.UpstreamUnavailable,
				run.Failure{Message: "the model deployment sent a stream that is not a chat completion stream", Status: http.StatusOK})
		}
		if len(ch.Error) > 0 && !bytes.Equal(ch.Error, []byte("null")) {
			msg := upstreamMessage(http.StatusInternalServerError, data)
			return CallModelResult{}, temporal.NewApplicationError("call model: error in stream: "+msg, run.UpstreamUnavailable,
				run.Failure{Message: msg, Status: http.StatusOK})
		}
		if ch.Model != "" {
			out.Model = ch.Model
		}
		if ch.Usage != nil {
			out.Usage = *ch.Usage
		}
		for _, c := range ch.Choices {
			if c.Index != 0 {
				continue
			}
			if c.Delta.Content != nil && *c.Delta.Content != "" {
				content.WriteString(*c.Delta.Content)
				pub.Delta(*c.Delta.Content)
			}
			for _, tc := range c.Delta.ToolCalls {
				if tc.Index < 0 || tc.Index > 1024 {
					return CallModelResult{}, broke(fmt.Sprintf("tool call index %d", tc.Index))
				}
				for len(calls) <= tc.Index {
					calls = append(calls, ToolCall{})
				}
				call := &calls[tc.Index]
				if tc.ID != "" {
					call.ID = tc.ID
				}
				if tc.Type != "" {
					call.Type = tc.Type
				}
				if tc.Function.Name != "" {
					call.Function.Name = tc.Function.Name
				}
				call.Function.Arguments += tc.Function.Arguments
			}
			if c.FinishReason != nil && *c.FinishReason != "" {
				out.FinishReason = *c.FinishReason
			}
		}
	}
	if err := sc.Err(); err != nil {
		return CallModelResult{}, broke(err.Error())
	}
	if !done && out.FinishReason == "" {
		return CallModelResult{}, broke("ended before the model finished")
	}
	out.Content = content.String()
	out.ToolCalls = calls
	return out, nil
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
	// Whether the call streams is the run's choice, not the document's.
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
	if in.Stream {
		set("stream", true)
		set("stream_options", map[string]bool{"include_usage": true})
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
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("call model: no model deployment %q in project %s", name, project), run.ModelNotFound, nil,
			run.Failure{Message: fmt.Sprintf("the prompt's model deployment %q does not exist in this project", name)})
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
			return nil, temporal.NewNonRetryableApplicationError("call model: no secrets box to open provider keys", run.ProviderKey, nil, run.Failure{Message: "internal error"})
		}
		key, err := a.Box.Open(row.APIKeySealed, row.ID[:])
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("call model: open provider key of deployment %s: %v", row.ID, err), run.ProviderKey, nil, run.Failure{Message: "internal error"})
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
