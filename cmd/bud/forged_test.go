package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
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

	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/runstream/runstreamtest"
	"github.com/budhq/bud/upstreamtest"
)

// TestDevForgedEventsAreIgnored runs `bud dev` on an external NATS reached
// with a password in BUD_NATS_URL, on which a third party can publish too.
// While a streamed run's model call is held after its first word, the
// third party, who sees the run's subject, publishes a turn_ended with an
// answer of its own (unsigned, and signed with a key of its own) and a
// delta: the gateway drops them all and streams the run's real answer.
func TestDevForgedEventsAreIgnored(t *testing.T) {
	srv := runstreamtest.Start(t)
	u, err := url.Parse(srv.URL())
	require.NoError(t, err)
	password, _ := u.User.Password()
	env := newDevEnv(t)
	env.env = []string{"BUD_NATS_URL=" + srv.URL()}
	p := env.start(t)
	defer p.stop(t)
	require.Contains(t, p.stdout.String(), "nats://bud:xxxxx@"+srv.Addr()+"  (external")
	require.NotContains(t, p.stdout.String()+p.stderr.String(), password, "the NATS password is never printed")

	token, err := os.ReadFile(filepath.Join(env.dataDir, "admin-token"))
	require.NoError(t, err)
	api := apiClient{t: t, base: "http://" + env.app, token: strings.TrimSpace(string(token))}

	const story = "Once upon a time the gateway kept its word"
	up := upstreamtest.New()
	defer up.Close()
	up.SetDefault(upstreamtest.Text(story))
	release := make(chan struct{})
	upSrv := httptest.NewServer(holdAfter(`"content":"Once`, release, up.Handler()))
	defer upSrv.Close()
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })

	var project struct{ ID string }
	api.do("POST", "/api/projects", map[string]any{"name": "forgery"}, http.StatusCreated, &project)
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
	var key struct{ Secret string }
	api.do("POST", "/api/projects/"+project.ID+"/api-keys", map[string]any{"name": "k"}, http.StatusCreated, &key)

	// The third party watches every run's subject.
	third := runstreamtest.Connect(t, srv)
	seen := make(chan *nats.Msg, 1)
	watch, err := third.Subscribe(runstream.SubjectPrefix+">", func(m *nats.Msg) {
		select {
		case seen <- m:
		default:
		}
	})
	require.NoError(t, err)
	defer func() { _ = watch.Unsubscribe() }()
	require.NoError(t, third.Flush())

	c := openai.NewClient(option.WithBaseURL("http://"+env.gateway+"/v1/"), option.WithAPIKey(key.Secret), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := make(chan streamed, 1)
	go func() {
		got <- readStream(c.Responses.NewStreaming(ctx, responses.ResponseNewParams{
			Prompt: responses.ResponsePromptParam{ID: "storyteller"},
			Input:  responses.ResponseNewParamsInputUnion{OfString: openai.String("gateways")},
		}))
	}()

	var first *nats.Msg
	select {
	case first = <-seen:
	case <-ctx.Done():
		t.Fatal("no event of the run on NATS")
	}
	require.NotEmpty(t, first.Header.Get(runstream.SignatureHeader), "the worker signs its events")
	responseID := strings.TrimPrefix(first.Subject, runstream.SubjectPrefix)
	forgedTurn := runstream.Event{Type: runstream.TypeTurnEnded,
		Output: []byte(`{"response_id":"` + responseID + `","turn":1,"status":"completed","text":"forged answer"}`)}
	require.NoError(t, runstream.Publish(ctx, third, first.Subject, "", runstream.Event{Type: runstream.TypeDelta, Call: 1, Attempt: 1, Seq: 2, Text: " FORGED"}))
	require.NoError(t, runstream.Publish(ctx, third, first.Subject, "", forgedTurn))
	require.NoError(t, runstream.Publish(ctx, third, first.Subject, runstream.NewEventKey(), forgedTurn))
	// The server has the forged events before the model goes on: they
	// reach the gateway ahead of the run's own.
	releaseOnce.Do(func() { close(release) })

	var s streamed
	select {
	case s = <-got:
	case <-ctx.Done():
		t.Fatal("no answer")
	}
	require.NoError(t, s.err)
	text, _ := s.text()
	require.Equal(t, story, text, "the deltas are the run's alone")
	final := s.final(t)
	require.Equal(t, responses.ResponseStatusCompleted, final.Status)
	require.Equal(t, responseID, final.ID)
	require.Equal(t, story, final.OutputText(), "the answer is the run's, not the forged one")
}

// holdAfter serves h, holding a response back after the write that holds
// marker (and its flush) until release is closed.
func holdAfter(marker string, release <-chan struct{}, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&holdingWriter{ResponseWriter: w, marker: []byte(marker), release: release}, r)
	})
}

type holdingWriter struct {
	http.ResponseWriter
	marker  []byte
	release <-chan struct{}
	seen    bool
	held    bool
}

func (w *holdingWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, w.marker) {
		w.seen = true
	}
	return w.ResponseWriter.Write(p)
}

func (w *holdingWriter) Flush() {
	http.NewResponseController(w.ResponseWriter).Flush()
	if w.seen && !w.held {
		w.held = true
		<-w.release
	}
}

func (w *holdingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
