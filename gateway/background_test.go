package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/upstreamtest"
)

func backgroundParams(prompt, input string) responses.ResponseNewParams {
	return responses.ResponseNewParams{
		Prompt:     responses.ResponsePromptParam{ID: prompt},
		Input:      responses.ResponseNewParamsInputUnion{OfString: openai.String(input)},
		Background: openai.Bool(true),
	}
}

// TestBackgroundRunOutlivesItsCaller: background: true answers at once,
// queued, while the model is still to answer; the caller goes away; the
// run goes on, GET shows it in progress, then completed with its text.
func TestBackgroundRunOutlivesItsCaller(t *testing.T) {
	b := setupRuns(t, setupOpts{})
	project := b.project(randomName("bg-"))
	_, secret := b.key(project)
	name := promptDeployment(b, project, b.up, nil, false)
	b.up.Script(upstreamtest.Text("Done in the background.").WithDelay(1500 * time.Millisecond))
	c := b.client(secret)

	// The caller's context ends as soon as the answer is in.
	cctx, cancel := context.WithCancel(ctx(t))
	start := time.Now()
	created, err := c.Responses.New(cctx, backgroundParams(name, "go on"))
	cancel()
	require.NoError(t, err)
	t.Logf("background create answered in %s", time.Since(start))
	require.Less(t, time.Since(start), time.Second, "answered before the model")
	require.Equal(t, responses.ResponseStatusQueued, created.Status)
	require.True(t, created.Background)
	require.Empty(t, created.Output)

	_, err = b.up.WaitRequests(ctx(t), 1)
	require.NoError(t, err)
	got, err := c.Responses.Get(ctx(t), created.ID, responses.ResponseGetParams{})
	require.NoError(t, err)
	require.Equal(t, responses.ResponseStatusInProgress, got.Status, "the model has not answered yet")

	require.Eventually(t, func() bool {
		got, err = c.Responses.Get(ctx(t), created.ID, responses.ResponseGetParams{})
		require.NoError(t, err)
		return got.Status == responses.ResponseStatusCompleted
	}, 20*time.Second, 50*time.Millisecond)
	require.Equal(t, "Done in the background.", got.OutputText())
	require.True(t, got.Background)

	// A finished run's cancel returns it unchanged.
	again, err := c.Responses.Cancel(ctx(t), created.ID)
	require.NoError(t, err)
	require.Equal(t, responses.ResponseStatusCompleted, again.Status)
	require.Equal(t, "Done in the background.", again.OutputText())

	var status string
	b.dbScalar(&status, `SELECT status FROM runs WHERE id = $1`, created.ID)
	require.Equal(t, "completed", status)

	// background with stream, or on a continue, is refused, not ignored.
	_, err = c.Responses.New(ctx(t), backgroundParams(name, "x"), option.WithJSONSet("stream", true))
	requireAPIError(t, err, http.StatusBadRequest, "invalid_value")
}

// TestCancelBackgroundRun: a cancel during a slow model call closes the
// upstream request within a second, ends the run cancelled (answer, GET
// and the runs table), and no model call follows.
func TestCancelBackgroundRun(t *testing.T) {
	b := setupRuns(t, setupOpts{})
	project := b.project(randomName("cancel-"))
	_, secret := b.key(project)
	name := promptDeployment(b, project, b.up, nil, false)
	b.up.SetDefault(upstreamtest.Text("too late").WithDelay(30 * time.Second))
	c := b.client(secret)

	created, err := c.Responses.New(ctx(t), backgroundParams(name, "slow"))
	require.NoError(t, err)
	_, err = b.up.WaitRequests(ctx(t), 1)
	require.NoError(t, err)

	start := time.Now()
	cancelled, err := c.Responses.Cancel(ctx(t), created.ID)
	require.NoError(t, err)
	wctx, wcancel := context.WithTimeout(ctx(t), 5*time.Second)
	_, err = b.up.WaitCancelled(wctx, 1)
	wcancel()
	require.NoError(t, err)
	closedIn := time.Since(start)
	t.Logf("the upstream request closed %s after the cancel", closedIn)
	require.Less(t, closedIn, time.Second)
	require.Equal(t, responses.ResponseStatusCancelled, cancelled.Status)

	got, err := c.Responses.Get(ctx(t), created.ID, responses.ResponseGetParams{})
	require.NoError(t, err)
	require.Equal(t, responses.ResponseStatusCancelled, got.Status)
	var status string
	b.dbScalar(&status, `SELECT status FROM runs WHERE id = $1`, created.ID)
	require.Equal(t, "cancelled", status)

	again, err := c.Responses.Cancel(ctx(t), created.ID)
	require.NoError(t, err)
	require.Equal(t, responses.ResponseStatusCancelled, again.Status, "unchanged")
	time.Sleep(time.Second)
	require.Equal(t, 1, b.up.Received(), "no model call after the cancel")

	// BudApp cancels a run the same way.
	other, err := c.Responses.New(ctx(t), backgroundParams(name, "slow too"))
	require.NoError(t, err)
	_, err = b.up.WaitRequests(ctx(t), 2)
	require.NoError(t, err)
	run := b.api("POST", "/api/runs/"+other.ID+"/cancel", nil, http.StatusOK)
	require.Equal(t, "cancelled", run["status"])
	wctx, wcancel = context.WithTimeout(ctx(t), 5*time.Second)
	_, err = b.up.WaitCancelled(wctx, 2)
	wcancel()
	require.NoError(t, err)
	b.api("POST", "/api/runs/resp_nosuchrun/cancel", nil, http.StatusNotFound)

	// A response not created in the background cannot be cancelled.
	b.up.SetDefault(upstreamtest.Text("fg"))
	fg, err := c.Responses.New(ctx(t), responses.ResponseNewParams{
		Prompt: responses.ResponsePromptParam{ID: name},
		Input:  responses.ResponseNewParamsInputUnion{OfString: openai.String("x")},
	})
	require.NoError(t, err)
	_, err = c.Responses.Cancel(ctx(t), fg.ID)
	requireAPIError(t, err, http.StatusBadRequest, "invalid_value")
}
