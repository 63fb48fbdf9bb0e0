package temporalserver_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/activities"
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
	w := workflows.NewWorker(c, &activities.Activities{Identity: "test-worker"})
	require.NoError(t, w.Start())

	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "ping-1", TaskQueue: workflows.TaskQueue}, workflows.Ping, workflows.PingInput{Message: "hello"})
	require.NoError(t, err)
	var out workflows.PingOutput
	require.NoError(t, run.Get(ctx, &out))
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
