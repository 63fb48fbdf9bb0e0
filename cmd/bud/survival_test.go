package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud"
	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/connection/slacktest"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/temporalserver"
	"github.com/budhq/bud/upstreamtest"
)

// TestRunSurvivesItsWorker kills a real `bud worker` process in the middle
// of a two-call run (the first reply fails validation, the repair call is
// in flight), starts another, and checks the run completes without the
// finished first call being made again: the upstream sees call 1 once and
// the repair call twice (the attempt cut short, then its retry).
func TestRunSurvivesItsWorker(t *testing.T) {
	f := newWorkerFixture(t)
	ctx, c, up, startWorker := f.ctx, f.c, f.up, f.startWorker
	up.Script(
		upstreamtest.Text("not JSON at all"),
		upstreamtest.JSONContent(map[string]any{"answer": "cut short"}).WithDelay(time.Minute),
		upstreamtest.JSONContent(map[string]any{"answer": "hello"}),
	)
	project := f.project

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
	in := run.Input{
		ResponseID: "resp_survival_" + uuid.NewString(), ProjectID: project.ID, Document: raw,
		Text: "hi", Source: run.SourcePlayground,
	}
	we, err := c.ExecuteWorkflow(ctx, runs.StartOptions(in), run.WorkflowName, in)
	require.NoError(t, err)

	// The repair call is in flight: kill the worker without a chance to
	// clean up, then start another.
	_, err = up.WaitRequests(ctx, 2)
	require.NoError(t, err)
	require.NoError(t, first.Process.Kill())
	_, _ = first.Process.Wait()
	startWorker()

	var out run.Turn
	require.NoError(t, we.Get(ctx, &out))
	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
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

// workerFixture is a database with a project and a model deployment on a
// stand-in, an embedded Temporal server, and real `bud worker` processes
// started on demand.
type workerFixture struct {
	ctx     context.Context
	q       *dbsqlc.Queries
	project dbsqlc.Project
	up      *upstreamtest.Server
	c       client.Client
	key     string
	dbURL   string
	// temporal is the server's frontend address.
	temporal string
	t        *testing.T
}

// startWorker starts a `bud worker` process and waits until it is ready;
// it is killed when the test ends, if it still runs.
func (f *workerFixture) startWorker() *exec.Cmd {
	t := f.t
	addr := freePort(t)
	cmd := exec.Command(budBinary, "worker")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+f.dbURL, "TEMPORAL_ADDRESS="+f.temporal, "BUD_ENCRYPTION_KEY="+f.key,
		"BUD_WORKER_ADDR="+addr, "BUD_METRICS_ADDR="+freePort(t), "BUD_LOG_LEVEL=warn",
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

func newWorkerFixture(t *testing.T) *workerFixture {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	f := &workerFixture{ctx: ctx, key: secrets.NewKey(), t: t}

	dbURL := dbtest.NewDatabase(t)
	pool, err := db.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, db.Migrate(ctx, pool, nil))
	f.up = upstreamtest.Start(t)
	f.q = dbsqlc.New(pool)
	f.project, err = f.q.CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "survival"})
	require.NoError(t, err)
	_, err = f.q.CreateDeployment(ctx, dbsqlc.CreateDeploymentParams{
		ProjectID: f.project.ID, Name: "m", Kind: bud.KindModel, BaseURL: f.up.URL(), UpstreamModel: "stand-in",
		DefaultParams: []byte(`{}`), Settings: []byte(`{}`),
	})
	require.NoError(t, err)

	srv, err := temporalserver.Start(ctx, temporalserver.Options{SearchAttributes: runs.SearchAttributes()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	f.c, err = client.Dial(client.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace()})
	require.NoError(t, err)
	t.Cleanup(f.c.Close)
	f.dbURL, f.temporal = dbURL, srv.HostPort()
	return f
}

// TestApprovalSurvivesItsWorker pauses a run for an approval, kills the
// worker while it waits, and approves with another worker running: the
// approved Slack call is made once, and the run completes with its result.
func TestApprovalSurvivesItsWorker(t *testing.T) {
	f := newWorkerFixture(t)
	slack := slacktest.New(t, "xoxb-survival")
	box, err := secrets.NewBox(mustKey(t, f.key))
	require.NoError(t, err)
	connID := uuid.New()
	creds, err := json.Marshal(connection.Credentials{Token: "xoxb-survival"})
	require.NoError(t, err)
	config, err := json.Marshal(connection.Config{BaseURL: slack.URL})
	require.NoError(t, err)
	_, err = f.q.CreateConnection(f.ctx, dbsqlc.CreateConnectionParams{
		ID: connID, ProjectID: f.project.ID, Name: "slack", Kind: connection.KindSlack,
		Config: config, CredentialsSealed: box.Seal(creds, connID[:]),
	})
	require.NoError(t, err)
	f.up.Script(
		upstreamtest.ToolCalls(upstreamtest.ToolCall{ID: "call_post", Name: "post_message", Arguments: `{"channel":"general","text":"approved while the worker was away"}`}),
		upstreamtest.EchoToolResults(),
	)

	first := f.startWorker()
	raw, err := json.Marshal(map[string]any{
		"deployment":           "m",
		"messages":             []any{map[string]any{"role": "user", "content": "{{ input }}"}},
		"tools":                []any{map[string]any{"type": "connection", "connection_id": connID.String(), "allowed_tools": []string{"post_message"}}},
		"allow_multiple_calls": true,
	})
	require.NoError(t, err)
	in := run.Input{
		ResponseID: "resp_approval_" + strings.ReplaceAll(uuid.NewString(), "-", ""), ProjectID: f.project.ID, Document: raw,
		Text: "post it", Source: run.SourcePlayground,
	}
	rc, err := runs.New(f.c, "")
	require.NoError(t, err)
	wait, err := rc.Start(f.ctx, in, runs.Completed)
	require.NoError(t, err)
	turn, err := wait()
	require.NoError(t, err)
	require.True(t, turn.Waiting)
	require.Len(t, turn.ApprovalRequests, 1, "require_approval defaults to always")
	require.Len(t, slack.History(slacktest.GeneralID), 1, "nothing posted before approval")

	require.NoError(t, first.Process.Kill())
	_, _ = first.Process.Wait()
	f.startWorker()

	h, err := f.c.UpdateWorkflow(f.ctx, client.UpdateWorkflowOptions{
		WorkflowID: in.ResponseID, UpdateName: run.UpdateApprove,
		Args:         []any{run.ApprovalDecision{ID: turn.ApprovalRequests[0].ID, Approve: true}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	require.NoError(t, err)
	require.NoError(t, h.Get(f.ctx, nil))

	var out run.Turn
	require.NoError(t, f.c.GetWorkflow(f.ctx, in.ResponseID, "").Get(f.ctx, &out))
	require.Equal(t, run.StatusCompleted, out.Status, "%+v", out.Error)
	require.Equal(t, 2, out.Turn)
	require.Contains(t, out.Text, `"channel":"`+slacktest.GeneralID+`"`)
	history := slack.History(slacktest.GeneralID)
	require.Len(t, history, 2, "posted exactly once")
	require.Equal(t, "approved while the worker was away", history[1].Text)
	require.Len(t, f.up.Requests(), 2)
}

func mustKey(t *testing.T, s string) []byte {
	t.Helper()
	k, err := secrets.ParseKey(s)
	require.NoError(t, err)
	return k
}
