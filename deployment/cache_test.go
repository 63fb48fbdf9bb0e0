package deployment_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/changes"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/secrets"
)

// bundle is a fresh schema with one project, and a cache over it that no
// listener feeds: a test applies changes itself.
type bundle struct {
	pool    *pgxpool.Pool
	q       *dbsqlc.Queries
	box     *secrets.Box
	project uuid.UUID
	cache   *deployment.Cache
}

func setup(t *testing.T) *bundle {
	t.Helper()
	pool, _ := dbtest.NewSchema(t)
	key, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	box, err := secrets.NewBox(key)
	require.NoError(t, err)
	q := dbsqlc.New(pool)
	p, err := q.CreateProject(t.Context(), dbsqlc.CreateProjectParams{Name: "p-" + uuid.NewString()[:8]})
	require.NoError(t, err)
	return &bundle{pool: pool, q: q, box: box, project: p.ID, cache: deployment.NewCache(deployment.Config{Pool: pool, Box: box, TTL: time.Hour})}
}

// model creates a model deployment; apiKey, when set, is sealed with the
// bundle's box.
func (b *bundle) model(t *testing.T, name, baseURL, apiKey, defaults string) dbsqlc.Deployment {
	t.Helper()
	row, err := b.q.CreateDeployment(t.Context(), dbsqlc.CreateDeploymentParams{
		ProjectID: b.project, Name: name, Kind: bud.KindModel, BaseURL: baseURL, UpstreamModel: "upstream-" + name,
		DefaultParams: []byte(defaults), Settings: []byte(`{}`),
	})
	require.NoError(t, err)
	if apiKey != "" {
		row = b.update(t, row, func(p *dbsqlc.UpdateDeploymentParams) { p.APIKeySealed = b.box.Seal([]byte(apiKey), row.ID[:]) })
	}
	return row
}

func (b *bundle) update(t *testing.T, row dbsqlc.Deployment, change func(*dbsqlc.UpdateDeploymentParams)) dbsqlc.Deployment {
	t.Helper()
	p := dbsqlc.UpdateDeploymentParams{
		ProjectID: b.project, ID: row.ID, Name: row.Name, BaseURL: row.BaseURL, UpstreamModel: row.UpstreamModel,
		APIKeySealed: row.APIKeySealed, DefaultParams: row.DefaultParams, Settings: row.Settings,
	}
	change(&p)
	row, err := b.q.UpdateDeployment(t.Context(), p)
	require.NoError(t, err)
	return row
}

func deploymentChanged(row dbsqlc.Deployment) changes.Change {
	return changes.Change{Kind: changes.KindDeployment, Project: row.ProjectID, Name: row.Name}
}

func TestModelIsReadyToCall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	row := b.model(t, "qwen", "http://upstream.test/v1/", "sk-provider", `{"temperature": 0.2, "max_tokens": 64}`)

	d, err := b.cache.Model(t.Context(), b.project, "qwen")

	require.NoError(t, err)
	require.Equal(t, row.ID, d.ID)
	require.Equal(t, b.project, d.ProjectID)
	require.Equal(t, "qwen", d.Name)
	require.Equal(t, bud.KindModel, d.Kind)
	require.Equal(t, "http://upstream.test/v1/chat/completions", d.ChatURL)
	require.Equal(t, "upstream-qwen", d.UpstreamModel)
	require.JSONEq(t, `"upstream-qwen"`, string(d.UpstreamModelJSON))
	require.Equal(t, "sk-provider", d.APIKey)
	require.Equal(t, map[string]json.RawMessage{"temperature": json.RawMessage(`0.2`), "max_tokens": json.RawMessage(`64`)}, d.Defaults)
}

// TestSettingsAreRead: a deployment carries its settings, the fields its
// stored ones lack at their defaults, and a change of them is read again
// once notified.
func TestSettingsAreRead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	row := b.model(t, "qwen", "http://upstream.test/v1", "", `{}`)
	d, err := b.cache.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	require.Equal(t, bud.DefaultSettings(), d.Settings)

	row = b.update(t, row, func(p *dbsqlc.UpdateDeploymentParams) {
		p.Settings = []byte(`{"max_concurrency": 3, "queue_timeout_ms": 250, "rate_limit": {"enabled": true, "requests_per_minute": 60, "burst": 5, "tokens_per_minute": 1000}}`)
	})
	b.cache.Apply(deploymentChanged(row))
	d, err = b.cache.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	want := bud.DefaultSettings()
	want.MaxConcurrency, want.QueueTimeoutMS = 3, 250
	want.RateLimit = bud.RateLimitSettings{Enabled: true, RequestsPerMinute: 60, Burst: 5, TokensPerMinute: 1000}
	require.Equal(t, want, d.Settings)
}

func TestChatURL(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"http://h:8000/v1", "http://h:8000/v1/", "http://h:8000/v1//"} {
		require.Equal(t, "http://h:8000/v1/chat/completions", deployment.ChatURL(base), base)
	}
}

func TestAbsentAndOtherKindsAreNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model(t, "qwen", "http://upstream.test/v1", "", `{}`)
	prompt, err := b.q.CreatePrompt(t.Context(), dbsqlc.CreatePromptParams{ProjectID: b.project, Name: "bot", Tags: []string{}})
	require.NoError(t, err)
	_, err = b.q.CreatePromptDeployment(t.Context(), dbsqlc.CreatePromptDeploymentParams{ProjectID: b.project, Name: "bot", PromptID: &prompt.ID, Settings: []byte(`{}`)})
	require.NoError(t, err)

	_, err = b.cache.Get(t.Context(), b.project, "missing")
	require.ErrorIs(t, err, deployment.ErrNotFound)
	_, err = b.cache.Model(t.Context(), uuid.New(), "qwen")
	require.ErrorIs(t, err, deployment.ErrNotFound, "another project's deployment is not found")
	_, err = b.cache.Model(t.Context(), b.project, "bot")
	require.ErrorIs(t, err, deployment.ErrNotFound, "a prompt deployment is no model")
	_, err = b.cache.Prompt(t.Context(), b.project, "qwen")
	require.ErrorIs(t, err, deployment.ErrNotFound, "a model deployment is no prompt")

	d, err := b.cache.Prompt(t.Context(), b.project, "bot")
	require.NoError(t, err)
	require.Equal(t, bud.KindPrompt, d.Kind)
	require.Equal(t, prompt.ID, d.PromptID)
	require.Nil(t, d.PromptVersion)
	require.Equal(t, prompt.DefaultVersion, d.DefaultVersion)
}

func TestNamesThatCannotBeDeploymentsAreNotLookedUp(t *testing.T) {
	t.Parallel()
	// Nothing listens there: any read fails, so ErrNotFound means none was tried.
	pool, err := pgxpool.New(t.Context(), "postgres://bud@127.0.0.1:1/bud?connect_timeout=1")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	c := deployment.NewCache(deployment.Config{Pool: pool, TTL: time.Hour})
	for _, name := range []string{"", "-x", "a b", strings.Repeat("m", bud.MaxNameLen+1), strings.Repeat("m", 4<<20)} {
		_, err := c.Model(t.Context(), uuid.New(), name)
		require.ErrorIs(t, err, deployment.ErrNotFound)
		_, err = c.Prompt(t.Context(), uuid.New(), name)
		require.ErrorIs(t, err, deployment.ErrNotFound)
	}
	require.Zero(t, c.Len())

	_, err = c.Model(t.Context(), uuid.New(), "valid")
	require.Error(t, err)
	require.NotErrorIs(t, err, deployment.ErrNotFound, "a valid name is read")
}

func TestCacheKeepsAtMostMaxEntries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model(t, "qwen", "http://upstream.test/v1", "", `{}`)
	c := deployment.NewCache(deployment.Config{Pool: b.pool, Box: b.box, TTL: time.Hour, MaxEntries: 3})
	for i := range 50 {
		_, err := c.Get(t.Context(), b.project, fmt.Sprintf("missing-%d", i))
		require.ErrorIs(t, err, deployment.ErrNotFound)
		require.LessOrEqual(t, c.Len(), 3)
	}
	d, err := c.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	require.Equal(t, "qwen", d.Name)
	require.Equal(t, 3, c.Len())
}

func TestProviderKeyThatCannotBeOpened(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model(t, "qwen", "http://upstream.test/v1", "sk-provider", `{}`)
	other, err := secrets.ParseKey(secrets.NewKey())
	require.NoError(t, err)
	otherBox, err := secrets.NewBox(other)
	require.NoError(t, err)

	for name, box := range map[string]*secrets.Box{"another box": otherBox, "no box": nil} {
		c := deployment.NewCache(deployment.Config{Pool: b.pool, Box: box})
		_, err := c.Model(t.Context(), b.project, "qwen")
		require.ErrorIs(t, err, deployment.ErrProviderKey, name)
		require.NotContains(t, err.Error(), "sk-provider", name)
	}
}

// TestEntriesLastUntilTheirChange: a hit reads no database, the absence of
// a deployment included, until the change that concerns it is applied.
func TestEntriesLastUntilTheirChange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	row := b.model(t, "qwen", "http://upstream.test/v1", "", `{}`)
	d, err := b.cache.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	_, err = b.cache.Get(t.Context(), b.project, "later")
	require.ErrorIs(t, err, deployment.ErrNotFound)

	row = b.update(t, row, func(p *dbsqlc.UpdateDeploymentParams) { p.UpstreamModel = "renamed" })
	later := b.model(t, "later", "http://upstream.test/v1", "", `{}`)
	again, err := b.cache.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	require.Same(t, d, again, "no change applied: the cached deployment")
	_, err = b.cache.Get(t.Context(), b.project, "later")
	require.ErrorIs(t, err, deployment.ErrNotFound, "no change applied: the cached absence")

	b.cache.Apply(deploymentChanged(row))
	b.cache.Apply(deploymentChanged(later))
	d, err = b.cache.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	require.Equal(t, "renamed", d.UpstreamModel)
	_, err = b.cache.Model(t.Context(), b.project, "later")
	require.NoError(t, err)

	b.cache.Apply(changes.Change{Kind: changes.KindKey, KeyHash: "00"})
	again, err = b.cache.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	require.Same(t, d, again, "a key's change leaves deployments be")
	b.cache.Reset()
	again, err = b.cache.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	require.NotSame(t, d, again, "a reset drops everything")
}

// TestPromptChangeRefreshesTheDefaultVersion: a deployment that follows
// its prompt's default is dropped by the prompt's change; one that pins a
// version is not.
func TestPromptChangeRefreshesTheDefaultVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prompt, err := b.q.CreatePrompt(t.Context(), dbsqlc.CreatePromptParams{ProjectID: b.project, Name: "bot", Tags: []string{}})
	require.NoError(t, err)
	two := int32(2)
	for name, version := range map[string]*int32{"follows": nil, "pinned": &two} {
		_, err = b.q.CreatePromptDeployment(t.Context(), dbsqlc.CreatePromptDeploymentParams{ProjectID: b.project, Name: name, PromptID: &prompt.ID, PromptVersion: version, Settings: []byte(`{}`)})
		require.NoError(t, err)
	}
	follows, err := b.cache.Get(t.Context(), b.project, "follows")
	require.NoError(t, err)
	require.Equal(t, int32(1), follows.DefaultVersion)
	pinned, err := b.cache.Get(t.Context(), b.project, "pinned")
	require.NoError(t, err)

	_, err = b.pool.Exec(t.Context(), "UPDATE prompts SET default_version = 3 WHERE id = $1", prompt.ID)
	require.NoError(t, err)
	b.cache.Apply(changes.Change{Kind: changes.KindPrompt, Prompt: prompt.ID})

	follows, err = b.cache.Get(t.Context(), b.project, "follows")
	require.NoError(t, err)
	require.Equal(t, int32(3), follows.DefaultVersion)
	again, err := b.cache.Get(t.Context(), b.project, "pinned")
	require.NoError(t, err)
	require.Same(t, pinned, again)
}

// TestEntriesExpireAfterTheTTL: a change whose notification was missed is
// seen once the TTL has passed.
func TestEntriesExpireAfterTheTTL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	row := b.model(t, "qwen", "http://upstream.test/v1", "", `{}`)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	c := deployment.NewCache(deployment.Config{Pool: b.pool, Box: b.box, TTL: time.Minute})
	c.SetNow(clock)
	_, err := c.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	b.update(t, row, func(p *dbsqlc.UpdateDeploymentParams) { p.UpstreamModel = "renamed" })

	mu.Lock()
	now = now.Add(59 * time.Second)
	mu.Unlock()
	d, err := c.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	require.Equal(t, "upstream-qwen", d.UpstreamModel, "within the TTL")
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	d, err = c.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	require.Equal(t, "renamed", d.UpstreamModel, "after the TTL")
}

// TestLoadRacingAChangeIsNotKept: a change applied while a load is reading
// the database keeps what the load read out of the cache.
func TestLoadRacingAChangeIsNotKept(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.model(t, "qwen", "http://upstream.test/v1", "", `{}`)
	c := deployment.NewCache(deployment.Config{Pool: b.pool, Box: b.box, TTL: time.Hour})
	// The clock is read once the row is in: a change applied there has
	// come in while the load ran.
	c.SetNow(func() time.Time {
		c.Apply(changes.Change{Kind: changes.KindDeployment, Project: b.project, Name: "qwen"})
		return time.Now()
	})
	first, err := c.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	c.SetNow(time.Now)
	second, err := c.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	require.NotSame(t, first, second, "the racing load was not kept")

	third, err := c.Model(t.Context(), b.project, "qwen")
	require.NoError(t, err)
	require.Same(t, second, third)
}
