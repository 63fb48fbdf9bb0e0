package temporalserver_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	_ "modernc.org/sqlite"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/temporalserver"
	"github.com/budhq/bud/workflows"
)

// TestPingThroughWorkerWiring starts the embedded server with a SQLite file,
// runs Ping through the same worker wiring `bud worker` uses, restarts the
// server on the same file and finds the finished run again.
func TestPingThroughWorkerWiring(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbFile := filepath.Join(t.TempDir(), "temporal.db")

	srv, err := temporalserver.Start(ctx, temporalserver.Options{DatabaseFile: dbFile})
	require.NoError(t, err)
	c, err := client.Dial(client.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace()})
	require.NoError(t, err)
	w := workflows.NewWorker(c, &activities.Activities{Identity: "test-worker"}, worker.Options{})
	require.NoError(t, w.Start())

	we, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "ping-1", TaskQueue: run.TaskQueue}, workflows.Ping, workflows.PingInput{Message: "hello"})
	require.NoError(t, err)
	var out workflows.PingOutput
	require.NoError(t, we.Get(ctx, &out))
	require.Equal(t, workflows.PingOutput{Message: "hello", Worker: "test-worker"}, out)

	w.Stop()
	c.Close()
	require.NoError(t, srv.Stop())

	// Same file, new server: the run is still there.
	srv2, err := temporalserver.Start(ctx, temporalserver.Options{DatabaseFile: dbFile})
	require.NoError(t, err)
	defer srv2.Stop()
	c2, err := client.Dial(client.Options{HostPort: srv2.HostPort(), Namespace: srv2.Namespace()})
	require.NoError(t, err)
	defer c2.Close()
	var again workflows.PingOutput
	require.NoError(t, c2.GetWorkflow(ctx, "ping-1", "").Get(ctx, &again))
	require.Equal(t, out, again)
}

// TestTakenPortFailsClearly checks that a busy frontend port is reported up
// front rather than deep inside the server.
func TestTakenPortFailsClearly(t *testing.T) {
	srv, err := temporalserver.Start(context.Background(), temporalserver.Options{})
	require.NoError(t, err)
	defer srv.Stop()
	_, port, _ := splitPort(srv.HostPort())
	_, err = temporalserver.Start(context.Background(), temporalserver.Options{FrontendPort: port})
	require.ErrorContains(t, err, "is not free")
}

// TestRunListsLiveInTheirOwnDatabase: the run lists (visibility) are kept
// in a second SQLite file with only the indexes they are read by, and a
// list filtered by a custom search attribute finds the run, also after a
// restart.
func TestRunListsLiveInTheirOwnDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	dbFile := filepath.Join(dir, "temporal.db")
	opts := temporalserver.Options{DatabaseFile: dbFile, SearchAttributes: map[string]enumspb.IndexedValueType{
		"BudProjectId": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	}}
	project := temporal.NewSearchAttributeKeyKeyword("BudProjectId")

	srv, err := temporalserver.Start(ctx, opts)
	require.NoError(t, err)
	c, err := client.Dial(client.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace()})
	require.NoError(t, err)
	w := workflows.NewWorker(c, &activities.Activities{Identity: "test-worker"}, worker.Options{})
	require.NoError(t, w.Start())
	we, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "ping-listed", TaskQueue: run.TaskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(project.ValueSet("p1"))}, workflows.Ping, workflows.PingInput{Message: "hi"})
	require.NoError(t, err)
	require.NoError(t, we.Get(ctx, nil))
	listed := func(c client.Client) []string {
		var ids []string
		require.Eventually(t, func() bool {
			resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: `BudProjectId = "p1" AND ExecutionStatus = "Completed"`})
			require.NoError(t, err)
			ids = ids[:0]
			for _, e := range resp.Executions {
				ids = append(ids, e.Execution.WorkflowId)
			}
			return len(ids) > 0
		}, 10*time.Second, 50*time.Millisecond)
		return ids
	}
	require.Equal(t, []string{"ping-listed"}, listed(c))
	w.Stop()
	c.Close()
	require.NoError(t, srv.Stop())

	visFile := filepath.Join(dir, "temporal-visibility.db")
	db, err := sql.Open("sqlite", "file:"+visFile+"?mode=ro")
	require.NoError(t, err)
	var indexes []string
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'executions_visibility' AND sql IS NOT NULL ORDER BY name`)
	require.NoError(t, err)
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		indexes = append(indexes, name)
	}
	require.NoError(t, rows.Err())
	var listedIn string
	require.NoError(t, db.QueryRow(`SELECT workflow_id FROM executions_visibility`).Scan(&listedIn))
	require.Equal(t, "ping-listed", listedIn, "the run list is written to the visibility file")
	require.NoError(t, db.Close())
	main, err := sql.Open("sqlite", "file:"+dbFile+"?mode=ro")
	require.NoError(t, err)
	var inMain int
	require.NoError(t, main.QueryRow(`SELECT count(*) FROM executions_visibility`).Scan(&inMain))
	require.Zero(t, inMain, "and not to the executions' file")
	require.NoError(t, main.Close())
	require.Len(t, indexes, 15, "the default order, four common filters and the ten keyword columns: %v", indexes)
	require.Contains(t, indexes, "default_idx")
	require.NotContains(t, indexes, "by_int_01")

	srv2, err := temporalserver.Start(ctx, opts)
	require.NoError(t, err)
	defer srv2.Stop()
	c2, err := client.Dial(client.Options{HostPort: srv2.HostPort(), Namespace: srv2.Namespace()})
	require.NoError(t, err)
	defer c2.Close()
	require.Equal(t, []string{"ping-listed"}, listed(c2))
}
