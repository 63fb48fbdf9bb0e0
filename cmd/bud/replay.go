package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/workflows"
)

const replayUsage = `usage: bud replay [flags] [history.json ...]

Replays recorded workflow histories against this binary's workflow code, as
a worker of this binary would on picking the runs up: the code re-executes
over the recorded events and must issue the same commands (activities, local
activities, timers) in the same order. Prints "ok <run>" for each history
that replays and "NON-DETERMINISTIC <run>: <the event it differs at>" for
each that does not, and exits 1 if any did not. Run it before upgrading the
workers of a cluster with runs in flight.

With history files (JSON, as the Temporal CLI and UI export them) it replays
those. Without, it fetches the histories of the most recent runs on the
prompt runs' task queue from the Temporal server (TEMPORAL_ADDRESS, with
the same TLS and API key settings as the other commands), filtered by the
flags below.

flags:
`

// Bounds of --count.
const (
	defaultReplayCount = 20
	maxReplayCount     = 1000
)

// replayStatuses maps --status to Temporal's execution status as its list
// query names it.
var replayStatuses = map[string]string{
	"running":          "Running",
	"completed":        "Completed",
	"failed":           "Failed",
	"canceled":         "Canceled",
	"terminated":       "Terminated",
	"continued_as_new": "ContinuedAsNew",
	"timed_out":        "TimedOut",
}

// replayFilters are the flags that choose which runs are fetched.
type replayFilters struct {
	since, prompt, status string
	count                 int
}

// runReplay is `bud replay`. Each history's verdict goes to stdout; the
// error, when any history fails, says how many.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := cfg.flagSet("replay", stderr, replayUsage, "temporal-address", "temporal-namespace",
		"temporal-tls-cert", "temporal-tls-key", "temporal-tls-ca", "temporal-tls-server-name", "temporal-api-key")
	var f replayFilters
	fs.StringVar(&f.since, "since", "", "only runs started since this time: a duration back from now (24h, 90m) or an RFC 3339 time")
	fs.StringVar(&f.prompt, "prompt", "", "only runs of this prompt (its id, a UUID)")
	fs.StringVar(&f.status, "status", "", "only runs whose workflow is running, completed, failed, canceled, terminated, continued_as_new or timed_out")
	fs.IntVar(&f.count, "count", defaultReplayCount, fmt.Sprintf("how many of the most recent runs to replay, 1 to %d", maxReplayCount))
	if err := fs.Parse(args); err != nil {
		return err
	}
	files := fs.Args()
	var filterFlags []string
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "since", "prompt", "status", "count":
			filterFlags = append(filterFlags, "--"+fl.Name)
		}
	})
	replayer := workflows.NewReplayer(nil)

	if len(files) > 0 {
		if len(filterFlags) > 0 {
			return fmt.Errorf("%s choose runs to fetch from Temporal; with history files there is nothing to choose", strings.Join(filterFlags, ", "))
		}
		var failed int
		for _, path := range files {
			if !replayOne(stdout, replayer, path, func() (*historypb.History, error) { return readHistoryFile(path) }) {
				failed++
			}
		}
		return replayVerdict(failed, len(files))
	}

	query, err := f.query(time.Now())
	if err != nil {
		return err
	}
	sec, err := cfg.temporalSecurity()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.DialContext(dialCtx, temporalClientOptions(log, cfg.TemporalAddress, cfg.TemporalNamespace, sec))
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w", cfg.TemporalAddress, err)
	}
	defer c.Close()

	execs, err := listRuns(ctx, c, cfg.TemporalNamespace, query, f.count)
	if err != nil {
		return err
	}
	if len(execs) == 0 {
		fmt.Fprintf(stderr, "no runs match (%s)\n", query)
		return nil
	}
	var failed int
	for _, e := range execs {
		id := e.GetWorkflowId()
		if !replayOne(stdout, replayer, id, func() (*historypb.History, error) {
			return fetchHistory(ctx, c, id, e.GetRunId())
		}) {
			failed++
		}
	}
	return replayVerdict(failed, len(execs))
}

// query is the list query of the runs f chooses, as of now.
func (f replayFilters) query(now time.Time) (string, error) {
	parts := []string{fmt.Sprintf("TaskQueue = '%s'", run.TaskQueue)}
	if f.count < 1 || f.count > maxReplayCount {
		return "", fmt.Errorf("--count: must be between 1 and %d", maxReplayCount)
	}
	if f.since != "" {
		since, err := time.Parse(time.RFC3339, f.since)
		if err != nil {
			d, derr := time.ParseDuration(f.since)
			if derr != nil || d <= 0 {
				return "", fmt.Errorf("--since: %q is neither a positive duration (24h) nor an RFC 3339 time", f.since)
			}
			since = now.Add(-d)
		}
		parts = append(parts, fmt.Sprintf("StartTime >= '%s'", since.UTC().Format(time.RFC3339Nano)))
	}
	if f.prompt != "" {
		id, err := uuid.Parse(f.prompt)
		if err != nil {
			return "", fmt.Errorf("--prompt: %q is not a prompt id (a UUID)", f.prompt)
		}
		parts = append(parts, fmt.Sprintf("%s = '%s'", runs.SearchAttributePromptID, id))
	}
	if f.status != "" {
		s, ok := replayStatuses[f.status]
		if !ok {
			return "", fmt.Errorf("--status: %q is not running, completed, failed, canceled, terminated, continued_as_new or timed_out", f.status)
		}
		parts = append(parts, "ExecutionStatus = '"+s+"'")
	}
	return strings.Join(parts, " AND "), nil
}

// listRuns returns up to count executions that match query, most recent
// first.
func listRuns(ctx context.Context, c client.Client, namespace, query string, count int) ([]*commonpb.WorkflowExecution, error) {
	var out []*commonpb.WorkflowExecution
	var token []byte
	for len(out) < count {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: namespace, Query: query, PageSize: int32(min(count-len(out), 100)), NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("list runs (%s): %w", query, err)
		}
		for _, e := range resp.GetExecutions() {
			if len(out) < count {
				out = append(out, e.GetExecution())
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	return out, nil
}

// fetchHistory reads the whole history of one execution.
func fetchHistory(ctx context.Context, c client.Client, workflowID, runID string) (*historypb.History, error) {
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		h.Events = append(h.Events, ev)
	}
	return h, nil
}

func readHistoryFile(path string) (*historypb.History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return h, nil
}

// replayOne replays the history load gives and prints its verdict under
// name; it reports whether the history replayed.
func replayOne(out io.Writer, r *workflows.Replayer, name string, load func() (*historypb.History, error)) bool {
	h, err := load()
	if err == nil {
		err = r.Replay(h)
	}
	var nd *workflows.NonDeterminismError
	switch {
	case err == nil:
		fmt.Fprintf(out, "ok %s\n", name)
		return true
	case errors.As(err, &nd):
		fmt.Fprintf(out, "NON-DETERMINISTIC %s: %v\n", name, oneLine(err))
	default:
		fmt.Fprintf(out, "FAILED %s: %v\n", name, oneLine(err))
	}
	return false
}

// oneLine keeps a verdict on its line: the SDK's messages may hold
// newlines.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func replayVerdict(failed, total int) error {
	if failed > 0 {
		return fmt.Errorf("%d of %d histories did not replay", failed, total)
	}
	return nil
}
