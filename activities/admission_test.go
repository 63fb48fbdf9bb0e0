package activities_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/upstreamtest"
)

// limitDeployment sets the settings of the bundle's deployment "qwen".
func (b *bundle) limitDeployment(t *testing.T, settings string) {
	t.Helper()
	d, err := b.q.GetDeploymentByName(t.Context(), dbsqlc.GetDeploymentByNameParams{ProjectID: b.project, Name: "qwen"})
	require.NoError(t, err)
	_, err = b.q.UpdateDeployment(t.Context(), dbsqlc.UpdateDeploymentParams{
		ProjectID: b.project, ID: d.ID, Name: d.Name, BaseURL: d.BaseURL, UpstreamModel: d.UpstreamModel,
		APIKeySealed: d.APIKeySealed, DefaultParams: d.DefaultParams, Settings: []byte(settings),
	})
	require.NoError(t, err)
}

// A run's model call waits its turn at the deployment's rate limit instead
// of failing: with one request a second and no burst, the second call
// leaves at least a second after the first.
func TestCallModelWaitsForTheDeploymentsRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.limitDeployment(t, `{"max_concurrency": 100, "rate_limit": {"enabled": true, "requests_per_minute": 60, "burst": 1}}`)
	b.upstream.Script(upstreamtest.Text("one"), upstreamtest.Text("two"))

	_, err := b.callModel(t, activities.CallModelInput{})
	require.NoError(t, err)
	start := time.Now()
	res, err := b.callModel(t, activities.CallModelInput{})
	require.NoError(t, err)
	require.Equal(t, "two", res.Content)
	require.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "the second call waited for the bucket to refill")
	require.Len(t, b.upstream.Requests(), 2)
}

// A call that would wait longer than a model call waits fails retryably
// with run.RateLimited and the delay the limit asks for, so the workflow
// retries it then.
func TestCallModelAtItsLimitIsRetriedLater(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.limitDeployment(t, `{"max_concurrency": 100, "rate_limit": {"enabled": true, "requests_per_minute": 1, "burst": 1}}`)
	b.upstream.Script(upstreamtest.Text("one"))

	_, err := b.callModel(t, activities.CallModelInput{})
	require.NoError(t, err)
	_, err = b.callModel(t, activities.CallModelInput{})

	appErr, f := appError(t, err)
	require.Equal(t, run.RateLimited, appErr.Type())
	require.False(t, appErr.NonRetryable())
	require.Greater(t, appErr.NextRetryDelay(), 30*time.Second, "the retry waits for the bucket")
	require.Contains(t, f.Message, `"qwen"`)
	require.Len(t, b.upstream.Requests(), 1, "the refused call never reached the upstream")
}

// max_concurrency bounds the calls in flight to a deployment, whichever
// activities make them, when they share one Admitter (as a process's
// gateway and worker do): with a bound of 1, two slow calls at once reach
// the upstream one after the other.
func TestCallModelConcurrencyIsShared(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.limitDeployment(t, `{"max_concurrency": 1, "queue_timeout_ms": 10000}`)
	const hold = 300 * time.Millisecond
	b.upstream.Script(upstreamtest.Text("a").WithDelay(hold), upstreamtest.Text("b").WithDelay(hold))
	shared := admission.New(admission.Config{})
	envs := make([]*bundle, 2)
	for i := range envs {
		acts := activities.New(activities.Config{Identity: "test", Pool: b.pool, Box: b.box, Admitter: shared})
		envs[i] = &bundle{pool: b.pool, q: b.q, box: b.box, upstream: b.upstream, project: b.project, acts: acts, env: newActivityEnv(acts)}
	}

	start := time.Now()
	var wg sync.WaitGroup
	for _, e := range envs {
		wg.Go(func() {
			_, err := e.callModel(t, activities.CallModelInput{})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	require.GreaterOrEqual(t, time.Since(start), 2*hold, "the second call waited for the first's slot")
}
