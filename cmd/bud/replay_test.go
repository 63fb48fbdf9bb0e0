package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// replayOutput is what one `bud replay` printed and how it exited.
type replayOutput struct {
	stdout, stderr string
	code           int
}

// runReplayBinary runs `bin replay args...` and waits for it to exit.
func runReplayBinary(t *testing.T, bin string, args ...string) replayOutput {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"replay"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := replayOutput{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		out.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("bud replay: %v\n%s", err, stderr.String())
	}
	return out
}

// verdicts are the lines `bud replay` printed, sorted.
func (o replayOutput) verdicts() []string {
	lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
	sort.Strings(lines)
	return lines
}

// buildBroken builds bud with the budbrokenreplay tag: a PromptRun that
// starts a timer before its first command, as no recorded run did.
func buildBroken(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bud-broken")
	out, err := exec.Command("go", "build", "-tags", "budbrokenreplay", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build -tags budbrokenreplay: %s", out)
	return bin
}

// TestReplayRecordedRuns makes two real prompt runs through `bud dev`,
// replays their histories fetched from its Temporal server with `bud
// replay` (ok), then with a build whose PromptRun issues another first
// command: both runs are reported non-deterministic at the event the
// history holds there, and it exits 1. The histories in
// workflows/testdata go the same way.
func TestReplayRecordedRuns(t *testing.T) {
	env := newDevEnv(t)
	p := env.start(t)
	defer p.stop(t)
	token, err := os.ReadFile(filepath.Join(env.dataDir, "admin-token"))
	require.NoError(t, err)
	api := apiClient{t: t, base: "http://" + env.app, token: strings.TrimSpace(string(token))}

	var project struct{ ID string }
	api.do("POST", "/api/projects", map[string]any{"name": "replays"}, http.StatusCreated, &project)
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"name": "echo", "kind": "model", "upstream": map[string]any{"base_url": "http://" + env.standIn + "/v1", "model": "stand-in"},
	}, http.StatusCreated, nil)
	var deployed struct {
		Prompt struct{ ID string } `json:"prompt"`
	}
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"kind": "prompt",
		"prompt": map[string]any{"name": "greeter", "document": map[string]any{
			"deployment": "echo",
			"messages":   []any{map[string]any{"role": "user", "content": "Greet {{ input }}."}},
		}},
	}, http.StatusCreated, &deployed)
	require.NotEmpty(t, deployed.Prompt.ID)
	var key struct{ Secret string }
	api.do("POST", "/api/projects/"+project.ID+"/api-keys", map[string]any{"name": "k"}, http.StatusCreated, &key)

	var ids []string
	for _, name := range []string{"Ada", "Grace"} {
		body, err := json.Marshal(map[string]any{"prompt": map[string]any{"id": "greeter"}, "input": name})
		require.NoError(t, err)
		req, err := http.NewRequest("POST", "http://"+env.gateway+"/v1/responses", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key.Secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", raw)
		var r struct{ ID, Status string }
		require.NoError(t, json.Unmarshal(raw, &r))
		require.Equal(t, "completed", r.Status, "%s", raw)
		ids = append(ids, r.ID)
	}
	latest := ids[len(ids)-1]
	sort.Strings(ids)

	// The runs' workflows close after answering, and the server's run
	// list (visibility) learns of it after that: wait for both there.
	tc, err := client.Dial(client.Options{HostPort: env.temporal, Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	require.NoError(t, err)
	defer tc.Close()
	query := fmt.Sprintf("BudPromptId = '%s' AND ExecutionStatus = 'Completed'", deployed.Prompt.ID)
	require.Eventually(t, func() bool {
		resp, err := tc.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		return err == nil && len(resp.GetExecutions()) == 2
	}, 30*time.Second, 50*time.Millisecond, "the runs never showed as completed in Temporal's run list")

	flags := []string{"--temporal-address", env.temporal, "--prompt", deployed.Prompt.ID, "--status", "completed", "--since", "1h", "--count", "5"}
	out := runReplayBinary(t, budBinary, flags...)
	require.Equal(t, 0, out.code, "stdout:\n%s\nstderr:\n%s", out.stdout, out.stderr)
	require.Equal(t, []string{"ok " + ids[0], "ok " + ids[1]}, out.verdicts())

	// --count takes the most recent.
	out = runReplayBinary(t, budBinary, "--temporal-address", env.temporal, "--prompt", deployed.Prompt.ID, "--count", "1")
	require.Equal(t, 0, out.code, out.stderr)
	require.Equal(t, []string{"ok " + latest}, out.verdicts())

	// Each history's first command is the event the broken build's timer
	// meets instead: the first event after the first workflow task.
	want := make([]string, len(ids))
	for i, id := range ids {
		it := tc.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		var first string
		for it.HasNext() && first == "" {
			ev, err := it.Next()
			require.NoError(t, err)
			if ev.GetEventId() > 1 && ev.GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED &&
				ev.GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED && ev.GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
				first = fmt.Sprintf("event %d (%s)", ev.GetEventId(), ev.GetEventType())
			}
		}
		require.NotEmpty(t, first)
		want[i] = "NON-DETERMINISTIC " + id + ": " + first
	}

	broken := buildBroken(t)
	out = runReplayBinary(t, broken, flags...)
	require.Equal(t, 1, out.code, "stdout:\n%s\nstderr:\n%s", out.stdout, out.stderr)
	got := out.verdicts()
	require.Len(t, got, 2, out.stdout)
	for i := range want {
		require.True(t, strings.HasPrefix(got[i], want[i]+", of the workflow task completed at event "), "got %q, want it to start with %q", got[i], want[i])
		require.Contains(t, got[i], "StartTimer", "the SDK's account names the command the code issued")
	}
	require.Contains(t, out.stderr, "2 of 2 histories did not replay")

	// The recorded histories of every kind of run: ok with this build,
	// each run's non-deterministic with the broken one.
	files, err := filepath.Glob("../../workflows/testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	out = runReplayBinary(t, budBinary, files...)
	require.Equal(t, 0, out.code, "stdout:\n%s\nstderr:\n%s", out.stdout, out.stderr)
	require.Len(t, out.verdicts(), len(files))
	for _, line := range out.verdicts() {
		require.True(t, strings.HasPrefix(line, "ok ../../workflows/testdata/"), line)
	}
	out = runReplayBinary(t, broken, files...)
	require.Equal(t, 1, out.code)
	for _, line := range out.verdicts() {
		if strings.Contains(line, "testdata/evaluation") {
			// The broken build breaks PromptRun alone: an Evaluation's
			// history holds no command of its children's.
			require.True(t, strings.HasPrefix(line, "ok ../../workflows/testdata/evaluation"), line)
			continue
		}
		require.Regexp(t, `^NON-DETERMINISTIC \.\./\.\./workflows/testdata/\S+\.json: event \d+ \(\w+\), of the workflow task completed at event \d+: `, line)
	}
}

// TestReplayRefusesBadFlags: what `bud replay` cannot honour is refused,
// naming the flag, before it connects anywhere.
func TestReplayRefusesBadFlags(t *testing.T) {
	t.Parallel()
	file := "../../workflows/testdata/promptrun_announced.json"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--count", "0"}, "--count"},
		{[]string{"--count", "1001"}, "--count"},
		{[]string{"--since", "yesterday"}, "--since"},
		{[]string{"--since", "-1h"}, "--since"},
		{[]string{"--prompt", "greeter"}, "--prompt"},
		{[]string{"--status", "done"}, "--status"},
		{[]string{"--prompt", "00000000-0000-0000-0000-000000000001", file}, "--prompt"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runReplay(context.Background(), append(tc.args, "--temporal-address", "127.0.0.1:1"), &stdout, &stderr)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.Empty(t, stdout.String())
		})
	}

	// A file that holds no history fails, and says so.
	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"events": "no"}`), 0o600))
	var stdout, stderr bytes.Buffer
	err := runReplay(context.Background(), []string{file, bad}, &stdout, &stderr)
	require.EqualError(t, err, "1 of 2 histories did not replay")
	require.Contains(t, stdout.String(), "ok "+file+"\n")
	require.Contains(t, stdout.String(), "FAILED "+bad+": ")
}
