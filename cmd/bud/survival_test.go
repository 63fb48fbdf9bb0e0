package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/temporalserver"
	"github.com/budhq/bud/upstreamtest"
	"github.com/budhq/bud/workflows"
)

// TestRunSurvivesItsWorker kills a real `bud worker` process in the middle
// of a two-call run (the first reply fails validation, the repair call is
// in flight), starts another, and checks the run completes without the
// finished first call being made again: the upstream sees call 1 once and
// the repair call twice (the attempt cut short, then its retry).
func TestRunSurvivesItsWorker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	dbURL := dbtest.NewDatabase(t)
	pool, err := db.Open(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	require.NoError(t, db.Migrate(ctx, pool, nil))

	up := upstreamtest.Start(t)
	up.Script(
		upstreamtest.Text("not JSON at all"),
		upstreamtest.JSONContent(map[string]any{"answer": "cut short"}).WithDelay(time.Minute),
		upstreamtest.JSONContent(map[string]any{"answer": "hello"}),
	)

	q := dbsqlc.New(pool)
	project, err := q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "survival"})
	require.NoError(t, err)
	_, err = q.CreateDeployment(ctx, dbsqlc.CreateDeploymentParams{
		ProjectID: project.ID, Name: "m", Kind: bud.KindModel, BaseURL: up.URL(), UpstreamModel: "stand-in",
		DefaultParams: []byte(`{}`), Settings: []byte(`{}`),
	})
	require.NoError(t, err)

	srv, err := temporalserver.Start(ctx, temporalserver.Options{SearchAttributes: workflows.SearchAttributes})
	require.NoError(t, err)
	defer srv.Stop()
	c, err := client.Dial(client.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace()})
	require.NoError(t, err)
	defer c.Close()

	key := secrets.NewKey()
	startWorker := func() *exec.Cmd {
		addr := freePort(t)
		cmd := exec.Command(budBinary, "worker")
		cmd.Env = append(os.Environ(),
			"DATABASE_URL="+dbURL, "TEMPORAL_ADDRESS="+srv.HostPort(), "BUD_ENCRYPTION_KEY="+key,
			"BUD_WORKER_ADDR="+addr, "BUD_LOG_LEVEL=warn",
		)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		require.Eventually(t, func() bool {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, time.Minute, 50*time.Millisecond, "worker ready")
		return cmd
	}

	first := startWorker()
	doc := map[string]any{
		"deployment":           "m",
		"messages":             []any{map[string]any{"role": "user", "content": "Answer {{ input }} as JSON."}},
		"output":               map[string]any{"type": "structured", "variables": []any{map[string]any{"name": "answer", "type": "string", "required": true}}},
		"allow_multiple_calls": true,
		"llm_retry_limit":      2,
	}
	raw, err := json.Marshal(doc)
	require.NoError(t, err)
	in := workflows.PromptRunInput{
		ResponseID: "resp_survival_" + uuid.NewString(), ProjectID: project.ID, Document: raw,
		Text: "hi", Source: workflows.SourcePlayground,
	}
	run, err := c.ExecuteWorkflow(ctx, workflows.StartOptions(in), workflows.PromptRunWorkflow, in)
	require.NoError(t, err)

	// The repair call is in flight: kill the worker without a chance to
	// clean up, then start another.
	_, err = up.WaitRequests(ctx, 2)
	require.NoError(t, err)
	require.NoError(t, first.Process.Kill())
	_, _ = first.Process.Wait()
	startWorker()

	var out workflows.PromptRunOutput
	require.NoError(t, run.Get(ctx, &out))
	require.Equal(t, workflows.StatusCompleted, out.Status, "%+v", out.Error)
	require.JSONEq(t, `{"answer":"hello"}`, string(out.Parsed))
	require.Equal(t, 2, out.ModelCalls)

	reqs := up.Requests()
	require.Len(t, reqs, 3, "call 1 once, the repair call twice")
	lastUser := func(r upstreamtest.Recorded) string {
		msgs := r.JSON["messages"].([]any)
		return fmt.Sprint(msgs[len(msgs)-1].(map[string]any)["content"])
	}
	require.Equal(t, "Answer hi as JSON.", lastUser(reqs[0]))
	require.NotEqual(t, lastUser(reqs[0]), lastUser(reqs[1]), "the second request is the repair")
	require.Equal(t, lastUser(reqs[1]), lastUser(reqs[2]), "the third is the same repair call, retried")
}
