package changes_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/changes"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
)

func TestParse(t *testing.T) {
	t.Parallel()
	p, id := uuid.New(), uuid.New()
	for payload, want := range map[string]changes.Change{
		`{"t" : "key", "h" : "ab01"}`:                                    {Kind: changes.KindKey, KeyHash: "ab01"},
		`{"t" : "deployment", "p" : "` + p.String() + `", "n" : "qwen"}`: {Kind: changes.KindDeployment, Project: p, Name: "qwen"},
		`{"t" : "prompt", "id" : "` + id.String() + `"}`:                 {Kind: changes.KindPrompt, Prompt: id},
		`{"t" : "tomorrow"}`:                                             {Kind: "tomorrow"},
	} {
		got, err := changes.Parse(payload)
		require.NoError(t, err, payload)
		require.Equal(t, want, got, payload)
	}
	_, err := changes.Parse("not json")
	require.Error(t, err)
}

// recorder is a subscriber that passes on what it is given, as a
// subscriber must, without blocking: the test reads all the while.
type recorder struct {
	changes chan changes.Change
	resets  chan struct{}
}

func (r *recorder) Apply(c changes.Change) {
	select {
	case r.changes <- c:
	default:
	}
}

func (r *recorder) Reset() {
	select {
	case r.resets <- struct{}{}:
	default:
	}
}

// TestListenerHandsOnTheTriggersChanges: once listening, a subscriber is
// reset (what changed before is unknown) and then given each change the
// triggers notify, as they notify it.
func TestListenerHandsOnTheTriggersChanges(t *testing.T) {
	t.Parallel()
	pool, _ := dbtest.NewSchema(t)
	q := dbsqlc.New(pool)
	r := &recorder{changes: make(chan changes.Change, 1024), resets: make(chan struct{}, 8)}
	l := changes.NewListener(pool, nil, r)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	select {
	case <-l.Listening():
	case <-time.After(10 * time.Second):
		t.Fatal("never subscribed")
	}
	select {
	case <-r.resets:
	case <-time.After(10 * time.Second):
		t.Fatal("not reset on subscribing")
	}

	project, err := q.CreateProject(t.Context(), dbsqlc.CreateProjectParams{Name: "p"})
	require.NoError(t, err)
	_, err = q.CreateDeployment(t.Context(), dbsqlc.CreateDeploymentParams{
		ProjectID: project.ID, Name: "qwen", Kind: "model", BaseURL: "http://upstream.test/v1", UpstreamModel: "m",
		DefaultParams: []byte(`{}`), Settings: []byte(`{}`),
	})
	require.NoError(t, err)
	// The database's other tests notify on the same channel: wait for ours.
	want := changes.Change{Kind: changes.KindDeployment, Project: project.ID, Name: "qwen"}
	timeout := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case c := <-r.changes:
			got = c == want
		case <-timeout:
			t.Fatal("the deployment's change never came")
		}
	}

	cancel()
	require.NoError(t, <-done)
}
