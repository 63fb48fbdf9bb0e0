package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/budhq/bud/upstreamtest"
)

// TestDevPromptRun runs a deployed prompt through `bud dev` end to end:
// BudApp saves and deploys it, the gateway starts a PromptRun workflow, the
// worker renders the messages and calls the stand-in (which echoes the last
// user message, so the reply is the rendered template), and the official
// OpenAI client reads OpenAI's Response object.
func TestDevPromptRun(t *testing.T) {
	env := newDevEnv(t)
	p := env.start(t)
	defer p.stop(t)
	token, err := os.ReadFile(filepath.Join(env.dataDir, "admin-token"))
	require.NoError(t, err)
	api := apiClient{t: t, base: "http://" + env.app, token: strings.TrimSpace(string(token))}

	var project struct{ ID string }
	api.do("POST", "/api/projects", map[string]any{"name": "runs"}, http.StatusCreated, &project)
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"name": "echo", "kind": "model", "upstream": map[string]any{"base_url": "http://" + env.standIn + "/v1", "model": "stand-in"},
	}, http.StatusCreated, nil)
	var deployment struct{ ID string }
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"kind":     "prompt",
		"settings": map[string]any{"min_concurrency": 2},
		"prompt": map[string]any{"name": "greeter", "document": map[string]any{
			"deployment":    "echo",
			"system_prompt": "You greet people.",
			"messages":      []any{map[string]any{"role": "user", "content": "Greet {{ name }} {{ times }} times{% if loud %}, loudly{% endif %}."}},
			"input": map[string]any{"type": "structured", "variables": []any{
				map[string]any{"name": "name", "type": "string", "required": true, "validation": map[string]any{"basic": map[string]any{"min_length": 2}}},
				map[string]any{"name": "times", "type": "integer", "default": 1, "validation": map[string]any{"basic": map[string]any{"ge": 1, "le": 5}}},
				map[string]any{"name": "loud", "type": "boolean", "default": false},
			}},
		}},
	}, http.StatusCreated, &deployment)
	var key struct{ Secret string }
	api.do("POST", "/api/projects/"+project.ID+"/api-keys", map[string]any{"name": "k"}, http.StatusCreated, &key)

	c := openai.NewClient(option.WithBaseURL("http://"+env.gateway+"/v1/"), option.WithAPIKey(key.Secret), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Prompt: responses.ResponsePromptParam{ID: "greeter", Variables: map[string]responses.ResponsePromptVariableUnionParam{
			"name":  {OfString: openai.String("Ada")},
			"times": {OfString: openai.String("3")}, // OpenAI's SDKs send strings; the gateway types them
			"loud":  {OfString: openai.String("true")},
		}},
	})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(resp.ID, "resp_"), resp.ID)
	require.Equal(t, responses.ResponseStatusCompleted, resp.Status)
	require.Equal(t, "Greet Ada 3 times, loudly.", resp.OutputText())
	require.Equal(t, "echo", resp.Model)
	require.Positive(t, resp.Usage.TotalTokens)

	// The same run, read back.
	again, err := c.Responses.Get(ctx, resp.ID, responses.ResponseGetParams{})
	require.NoError(t, err)
	require.Equal(t, resp.OutputText(), again.OutputText())

	// The run drew on its deployment's share of the workers.
	tc, err := client.Dial(client.Options{HostPort: env.temporal, Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	require.NoError(t, err)
	defer tc.Close()
	desc, err := tc.DescribeWorkflowExecution(ctx, resp.ID, "")
	require.NoError(t, err)
	require.Equal(t, "deployment:"+deployment.ID, desc.GetWorkflowExecutionInfo().GetPriority().GetFairnessKey())
	require.Equal(t, float32(2), desc.GetWorkflowExecutionInfo().GetPriority().GetFairnessWeight())

	// A variable that breaks its constraint: 400 naming it, no run.
	_, err = c.Responses.New(ctx, responses.ResponseNewParams{
		Prompt: responses.ResponsePromptParam{ID: "greeter", Variables: map[string]responses.ResponsePromptVariableUnionParam{
			"name": {OfString: openai.String("Ada")}, "times": {OfString: openai.String("9")},
		}},
	})
	var apiErr *openai.Error
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 400, apiErr.StatusCode)
	require.Equal(t, "prompt.variables.times", apiErr.Param)

	// A prompt that is not deployed in this project: 404.
	_, err = c.Responses.New(ctx, responses.ResponseNewParams{Prompt: responses.ResponsePromptParam{ID: "nope"}})
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 404, apiErr.StatusCode)
}

// sendTimes wraps the stand-in's handler and notes when each piece of a
// reply left it (after its flush), so a test can tell when the model
// "produced" a piece of text.
type sendTimes struct {
	mu     sync.Mutex
	writes []timedWrite
}

type timedWrite struct {
	at   time.Time
	data string
}

func (s *sendTimes) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&timedWriter{ResponseWriter: w, s: s}, r)
	})
}

// contentWrites returns when each chunk of content was sent (the chunk
// announcing the role carries none), and forgets them.
func (s *sendTimes) contentWrites() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	for _, w := range s.writes {
		if strings.Contains(w.data, `"delta":{"content":"`) {
			out = append(out, w.at)
		}
	}
	s.writes = nil
	return out
}

type timedWriter struct {
	http.ResponseWriter
	s       *sendTimes
	pending []byte
}

func (w *timedWriter) Write(p []byte) (int, error) {
	w.pending = append(w.pending, p...)
	return w.ResponseWriter.Write(p)
}

func (w *timedWriter) Flush() {
	http.NewResponseController(w.ResponseWriter).Flush()
	w.s.mu.Lock()
	w.s.writes = append(w.s.writes, timedWrite{at: time.Now(), data: string(w.pending)})
	w.s.mu.Unlock()
	w.pending = w.pending[:0]
}

func (w *timedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// streamed is what a client read of one streaming response.
type streamed struct {
	events []responses.ResponseStreamEventUnion
	at     []time.Time
	err    error
}

func readStream(st interface {
	Next() bool
	Current() responses.ResponseStreamEventUnion
	Err() error
}) streamed {
	var s streamed
	for st.Next() {
		s.events = append(s.events, st.Current())
		s.at = append(s.at, time.Now())
	}
	s.err = st.Err()
	return s
}

func (s streamed) types() []string {
	var out []string
	for _, ev := range s.events {
		out = append(out, ev.Type)
	}
	return out
}

// text joins every delta; items counts the items whose text was streamed.
func (s streamed) text() (string, int) {
	var b strings.Builder
	items := map[string]bool{}
	for _, ev := range s.events {
		if ev.Type == "response.output_text.delta" {
			b.WriteString(ev.Delta)
			items[ev.ItemID] = true
		}
	}
	return b.String(), len(items)
}

func (s streamed) deltas() []string {
	var out []string
	for _, ev := range s.events {
		if ev.Type == "response.output_text.delta" {
			out = append(out, ev.Delta)
		}
	}
	return out
}

func (s streamed) final(t *testing.T) responses.Response {
	t.Helper()
	require.NotEmpty(t, s.events)
	last := s.events[len(s.events)-1]
	require.Equal(t, "response.completed", last.Type)
	return last.Response
}

// requireTextEventOrder requires the order of events of a run that streams
// one message, and sequence numbers from 0 without a gap.
func requireTextEventOrder(t *testing.T, s streamed) {
	t.Helper()
	types := s.types()
	head := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	tail := []string{"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
	require.Greater(t, len(types), len(head)+len(tail), "%v", types)
	require.Equal(t, head, types[:len(head)])
	require.Equal(t, tail, types[len(types)-len(tail):])
	for _, typ := range types[len(head) : len(types)-len(tail)] {
		require.Equal(t, "response.output_text.delta", typ)
	}
	for i, ev := range s.events {
		require.Equal(t, int64(i), ev.SequenceNumber)
	}
}

// TestDevPromptRunStreaming streams prompt runs through `bud dev` with the
// official OpenAI client: the events come in OpenAI's order, deltas arrive
// while the model is still writing and add up to the final text, and
// neither a repaired structured reply nor a model call retried halfway
// through its stream leaves the client with text twice. The model is a
// stand-in in the test process, so its replies can be scripted and the
// moment it sends each word is known.
func TestDevPromptRunStreaming(t *testing.T) {
	env := newDevEnv(t)
	p := env.start(t)
	defer p.stop(t)
	// The embedded NATS shows its URL with the password redacted, and
	// refuses a client without it.
	require.Contains(t, p.stdout.String(), "nats://bud:xxxxx@"+env.nats)
	intruder, err := nats.Connect("nats://"+env.nats, nats.NoReconnect())
	if err == nil {
		intruder.Close()
	}
	require.ErrorIs(t, err, nats.ErrAuthorization)
	token, err := os.ReadFile(filepath.Join(env.dataDir, "admin-token"))
	require.NoError(t, err)
	api := apiClient{t: t, base: "http://" + env.app, token: strings.TrimSpace(string(token))}

	up := upstreamtest.New()
	var sent sendTimes
	upSrv := httptest.NewServer(sent.wrap(up.Handler()))
	defer upSrv.Close()
	defer up.Close()

	var project struct{ ID string }
	api.do("POST", "/api/projects", map[string]any{"name": "streams"}, http.StatusCreated, &project)
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"name": "model", "kind": "model", "upstream": map[string]any{"base_url": upSrv.URL + "/v1", "model": "stand-in"},
	}, http.StatusCreated, nil)
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"kind": "prompt",
		"prompt": map[string]any{"name": "storyteller", "document": map[string]any{
			"deployment": "model",
			"messages":   []any{map[string]any{"role": "user", "content": "Tell a story about {{ input }}."}},
		}},
	}, http.StatusCreated, nil)
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"kind": "prompt",
		"prompt": map[string]any{"name": "scorer", "document": map[string]any{
			"deployment": "model",
			"messages":   []any{map[string]any{"role": "user", "content": "Score {{ input }} from 0 to 10."}},
			"output": map[string]any{"type": "structured", "variables": []any{
				map[string]any{"name": "score", "type": "integer", "required": true, "validation": map[string]any{"basic": map[string]any{"ge": 0, "le": 10}}},
			}},
			"allow_multiple_calls": true,
			"llm_retry_limit":      2,
		}},
	}, http.StatusCreated, nil)
	var key struct{ Secret string }
	api.do("POST", "/api/projects/"+project.ID+"/api-keys", map[string]any{"name": "k"}, http.StatusCreated, &key)
	c := openai.NewClient(option.WithBaseURL("http://"+env.gateway+"/v1/"), option.WithAPIKey(key.Secret), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	params := func(prompt, input string) responses.ResponseNewParams {
		return responses.ResponseNewParams{
			Prompt: responses.ResponsePromptParam{ID: prompt},
			Input:  responses.ResponseNewParamsInputUnion{OfString: openai.String(input)},
		}
	}

	t.Run("text streams live", func(t *testing.T) {
		const story = "Once upon a time a gateway streamed every word"
		const chunkDelay = 100 * time.Millisecond
		up.Script(upstreamtest.Text(story).WithChunkDelay(chunkDelay))

		s := readStream(c.Responses.NewStreaming(ctx, params("storyteller", "gateways")))

		require.NoError(t, s.err)
		requireTextEventOrder(t, s)
		text, items := s.text()
		require.Equal(t, story, text, "the deltas add up to the text")
		require.Equal(t, 1, items)
		final := s.final(t)
		require.Equal(t, story, final.OutputText())
		require.Equal(t, responses.ResponseStatusCompleted, final.Status)
		require.Positive(t, final.Usage.TotalTokens)
		require.Equal(t, 9, len(s.events)-8, "one delta per word, as the model sent them")

		// Each word reaches the client before the model sends the next
		// one, 100 ms later: the stream is live, not replayed at the end.
		words := sent.contentWrites()
		require.Len(t, words, 9)
		var worst time.Duration
		for i, at := range words {
			lag := s.at[4+i].Sub(at)
			require.Less(t, lag, chunkDelay, "delta %d", i)
			worst = max(worst, lag)
		}
		t.Logf("stand-in sends a word -> client reads its delta: first %s, worst of 9 %s", s.at[4].Sub(words[0]), worst)
		again, err := c.Responses.Get(ctx, final.ID, responses.ResponseGetParams{})
		require.NoError(t, err)
		require.Equal(t, story, again.OutputText())
		require.Equal(t, final.Output[0].ID, again.Output[0].ID, "the same message id, streamed or read back")
	})

	t.Run("a repaired reply is streamed once, when valid", func(t *testing.T) {
		up.Script(
			upstreamtest.JSONContent(map[string]any{"score": 42}).WithChunkDelay(10*time.Millisecond),
			upstreamtest.JSONContent(map[string]any{"score": 7}).WithChunkDelay(10*time.Millisecond),
		)

		s := readStream(c.Responses.NewStreaming(ctx, params("scorer", "this gateway")))

		require.NoError(t, s.err)
		requireTextEventOrder(t, s)
		text, items := s.text()
		require.Equal(t, `{"score":7}`, text)
		require.Equal(t, 1, items)
		require.NotContains(t, text, "42", "the rejected reply never reaches the client")
		require.Equal(t, []string{`{"score":7}`}, s.deltas(), "held until the workflow accepted it, then sent whole")
		require.Equal(t, `{"score":7}`, s.final(t).OutputText())
	})

	t.Run("a call retried mid-stream does not repeat text", func(t *testing.T) {
		const story = "alpha beta gamma delta epsilon"
		up.Script(
			upstreamtest.Text(story).WithDropAfter(4), // the role chunk and three words, then the connection drops
			upstreamtest.Text(story),
		)

		s := readStream(c.Responses.NewStreaming(ctx, params("storyteller", "letters")))

		require.NoError(t, s.err)
		requireTextEventOrder(t, s)
		text, items := s.text()
		require.Equal(t, story, text, "the retry continues where the client is, without repeating")
		require.Equal(t, 1, items)
		require.Equal(t, []string{"alpha", " beta", " gamma", " delta", " epsilon"}, s.deltas(),
			"the broken attempt's words went out live; its retry sent only the rest")
		require.Equal(t, story, s.final(t).OutputText())
	})

	t.Run("invalid input is a plain 400", func(t *testing.T) {
		api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
			"kind": "prompt",
			"prompt": map[string]any{"name": "typed", "document": map[string]any{
				"deployment": "model",
				"messages":   []any{map[string]any{"role": "user", "content": "{{ n }}"}},
				"input": map[string]any{"type": "structured", "variables": []any{
					map[string]any{"name": "n", "type": "integer", "required": true},
				}},
			}},
		}, http.StatusCreated, nil)
		st := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Prompt: responses.ResponsePromptParam{ID: "typed"}})
		require.False(t, st.Next())
		var apiErr *openai.Error
		require.True(t, errors.As(st.Err(), &apiErr), "%v", st.Err())
		require.Equal(t, 400, apiErr.StatusCode)
		require.Equal(t, "prompt.variables.n", apiErr.Param)
	})

	t.Run("a client that leaves does not stop the run", func(t *testing.T) {
		const story = "a run outlives its caller"
		up.Script(upstreamtest.Text(story).WithChunkDelay(50 * time.Millisecond))
		sctx, stop := context.WithCancel(ctx)
		st := c.Responses.NewStreaming(sctx, params("storyteller", "durability"))
		require.True(t, st.Next(), "%v", st.Err())
		id := st.Current().Response.ID
		stop()
		_ = st.Close()

		// The run goes on without anyone watching: wait for its workflow.
		tc, err := client.Dial(client.Options{HostPort: env.temporal, Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
		require.NoError(t, err)
		defer tc.Close()
		require.NoError(t, tc.GetWorkflow(ctx, id, "").Get(ctx, nil))
		r, err := c.Responses.Get(ctx, id, responses.ResponseGetParams{})
		require.NoError(t, err)
		require.Equal(t, responses.ResponseStatusCompleted, r.Status)
		require.Equal(t, story, r.OutputText())
	})
}
