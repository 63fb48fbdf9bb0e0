package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/app"
	"github.com/budhq/bud/statestore"
	"github.com/budhq/bud/statestore/statestoretest"
)

type promptOut struct {
	app.Prompt
	Document map[string]any `json:"document"`
}

type versionOut struct {
	app.PromptVersion
	Document map[string]any `json:"document"`
}

// promptDoc is a valid document on deployment dep; extra fields override.
func promptDoc(dep string, extra map[string]any) map[string]any {
	doc := map[string]any{
		"deployment":    dep,
		"system_prompt": "You greet people.",
		"messages":      []any{map[string]any{"role": "user", "content": "Greet {{ name }} in {{ language }}."}},
		"input": map[string]any{"type": "structured", "variables": []any{
			map[string]any{"name": "name", "type": "string", "required": true, "validation": map[string]any{"basic": map[string]any{"min_length": 1, "max_length": 50}}},
			map[string]any{"name": "language", "type": "enum", "options": []any{"English", "French"}, "default": "English"},
		}},
		"model_params": map[string]any{"temperature": 0.2},
	}
	for k, v := range extra {
		doc[k] = v
	}
	return doc
}

// promptSetup is a project with a model deployment "llm".
func promptSetup(t *testing.T, opts ...func(*app.Config)) (*bundle, bud.Project) {
	b := setup(t, opts...)
	p := b.createProject(t, "proj")
	b.createDeployment(t, p.ID, modelBody("llm", nil))
	return b, p
}

func (b *bundle) createPrompt(t *testing.T, projectID uuid.UUID, name string, tags []string) promptOut {
	t.Helper()
	return decodeAs[promptOut](t, b.do(t, "POST", "/api/projects/"+projectID.String()+"/prompts",
		map[string]any{"name": name, "description": "d", "tags": tags, "document": promptDoc("llm", nil)}), http.StatusCreated)
}

func TestPromptLifecycle(t *testing.T) {
	t.Parallel()
	b, p := promptSetup(t)
	docs := statestoretest.Store(t)

	pr := b.createPrompt(t, p.ID, "greeter", []string{"demo"})
	require.EqualValues(t, 1, pr.DefaultVersion)
	require.EqualValues(t, 1, pr.LatestVersion)
	require.EqualValues(t, 1, *pr.Version)
	require.Equal(t, "llm", pr.Document["deployment"])
	require.EqualValues(t, 3, pr.Document["llm_retry_limit"], "stored with its defaults filled in")

	// The document lives in the state store under its version's key.
	raw, err := docs.Get(context.Background(), statestore.DocumentKey(pr.ID, 1))
	require.NoError(t, err)
	require.Contains(t, string(raw), `"deployment":"llm"`)

	// A second version does not move the default.
	v2doc := promptDoc("llm", map[string]any{"system_prompt": "You greet people warmly."})
	v2 := decodeAs[versionOut](t, b.do(t, "POST", "/api/prompts/"+pr.ID.String()+"/versions", map[string]any{"document": v2doc, "note": "warmer"}), http.StatusCreated)
	require.EqualValues(t, 2, v2.Version)
	require.Equal(t, "warmer", v2.Note)
	got := decodeAs[promptOut](t, b.do(t, "GET", "/api/prompts/"+pr.ID.String(), nil), http.StatusOK)
	require.EqualValues(t, 1, got.DefaultVersion)
	require.EqualValues(t, 2, got.LatestVersion)
	require.Equal(t, "You greet people.", got.Document["system_prompt"])
	got = decodeAs[promptOut](t, b.do(t, "GET", "/api/prompts/"+pr.ID.String()+"?version=2", nil), http.StatusOK)
	require.Equal(t, "You greet people warmly.", got.Document["system_prompt"])

	// Switch the default.
	patched := decodeAs[promptOut](t, b.do(t, "PATCH", "/api/prompts/"+pr.ID.String(), map[string]any{"default_version": 2, "tags": []string{"demo", "warm"}}), http.StatusOK)
	require.EqualValues(t, 2, patched.DefaultVersion)
	require.Equal(t, []string{"demo", "warm"}, patched.Tags)
	e := errorOf(t, b.do(t, "PATCH", "/api/prompts/"+pr.ID.String(), map[string]any{"default_version": 9}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "default_version")

	versions := decodeAs[page[app.PromptVersion]](t, b.do(t, "GET", "/api/prompts/"+pr.ID.String()+"/versions", nil), http.StatusOK)
	require.EqualValues(t, 2, versions.Total)
	require.EqualValues(t, 2, versions.Data[0].Version, "newest first")
	one := decodeAs[versionOut](t, b.do(t, "GET", "/api/prompts/"+pr.ID.String()+"/versions/1", nil), http.StatusOK)
	require.Equal(t, "You greet people.", one.Document["system_prompt"])
	errorOf(t, b.do(t, "GET", "/api/prompts/"+pr.ID.String()+"/versions/3", nil), http.StatusNotFound)

	// The run form of a version.
	form := decodeAs[struct {
		Steps []map[string]any `json:"steps"`
	}](t, b.do(t, "GET", "/api/prompts/"+pr.ID.String()+"/versions/1/form", nil), http.StatusOK)
	require.Len(t, form.Steps, 2)
	require.Equal(t, "name", form.Steps[0]["name"])
	require.Equal(t, "select", form.Steps[1]["widget"])

	// Delete removes every version's document and the metadata.
	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", "/api/prompts/"+pr.ID.String(), nil).status)
	errorOf(t, b.do(t, "GET", "/api/prompts/"+pr.ID.String(), nil), http.StatusNotFound)
	for _, v := range []int{1, 2} {
		_, err := docs.Get(context.Background(), statestore.DocumentKey(pr.ID, v))
		require.ErrorIs(t, err, statestore.ErrNotFound)
	}
}

func TestPromptListFilters(t *testing.T) {
	t.Parallel()
	b, p := promptSetup(t)
	other := b.createProject(t, "other")
	b.createDeployment(t, other.ID, modelBody("llm", nil))
	b.createPrompt(t, p.ID, "alpha-writer", []string{"writing"})
	b.createPrompt(t, p.ID, "beta_summarizer", []string{"summaries", "writing"})
	b.createPrompt(t, other.ID, "gamma", nil)

	names := func(path string) []string {
		pg := decodeAs[page[app.Prompt]](t, b.do(t, "GET", path, nil), http.StatusOK)
		var out []string
		for _, p := range pg.Data {
			out = append(out, p.Name)
		}
		return out
	}
	require.Equal(t, []string{"gamma", "beta_summarizer", "alpha-writer"}, names("/api/prompts"), "newest update first")
	require.Equal(t, []string{"beta_summarizer", "alpha-writer"}, names("/api/prompts?project_id="+p.ID.String()))
	require.Equal(t, []string{"beta_summarizer", "alpha-writer"}, names("/api/projects/"+p.ID.String()+"/prompts"))
	require.Equal(t, []string{"beta_summarizer"}, names("/api/prompts?q=SUMM"))
	require.Empty(t, names("/api/prompts?q=_"+"x"), "wildcards in the search are literal")
	require.Equal(t, []string{"beta_summarizer", "alpha-writer"}, names("/api/prompts?tag=writing"))
	require.Equal(t, []string{"alpha-writer"}, names("/api/prompts?limit=1&offset=2"))
	errorOf(t, b.do(t, "GET", "/api/prompts?project_id=nope", nil), http.StatusBadRequest)

	// Names are unique per project only.
	e := errorOf(t, b.do(t, "POST", "/api/projects/"+p.ID.String()+"/prompts", map[string]any{"name": "alpha-writer", "document": promptDoc("llm", nil)}), http.StatusConflict)
	require.Contains(t, e.Error.Fields, "name")
	b.createPrompt(t, other.ID, "alpha-writer", nil)
}

func TestPromptDocumentRefused(t *testing.T) {
	t.Parallel()
	b, p := promptSetup(t)
	b.createDeployment(t, p.ID, map[string]any{"name": "greet", "kind": "prompt", "prompt": map[string]any{"name": "g", "document": promptDoc("llm", nil)}})
	path := "/api/projects/" + p.ID.String() + "/prompts"
	for _, tc := range []struct {
		name   string
		doc    map[string]any
		status int
		fields []string
	}{
		{"unknown deployment", promptDoc("nope", nil), 422, []string{"document.deployment"}},
		{"prompt deployment as the model", promptDoc("greet", nil), 422, []string{"document.deployment"}},
		{"undefined variable and bad template at once", promptDoc("llm", map[string]any{
			"system_prompt": "Hi {{ nobody }}",
			"messages":      []any{map[string]any{"role": "user", "content": "{% if %}"}},
		}), 422, []string{"document.messages[0].content", "document.system_prompt"}},
		{"min above max", promptDoc("llm", map[string]any{"settings": map[string]any{"min_concurrency": 5, "max_concurrency": 2}}), 422, []string{"document.settings.min_concurrency"}},
		{"tool messages that answer no call", promptDoc("llm", map[string]any{
			"messages": []any{
				map[string]any{"role": "user", "content": "Greet {{ name }} in {{ language }}."},
				map[string]any{"role": "tool", "content": "no id"},
				map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": "c1", "type": "function", "function": map[string]any{"name": "lookup", "arguments": "{}"}}}},
				map[string]any{"role": "tool", "tool_call_id": "c2", "content": "another call"},
			},
		}), 422, []string{"document.messages[1].tool_call_id", "document.messages[2].tool_calls[0].id", "document.messages[3].tool_call_id"}},
		{"unknown field", promptDoc("llm", map[string]any{"temprature": 1}), 400, []string{"document.temprature"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := errorOf(t, b.do(t, "POST", path, map[string]any{"name": "p", "document": tc.doc}), tc.status)
			var got []string
			for f := range e.Error.Fields {
				got = append(got, f)
			}
			sort.Strings(got)
			require.Equal(t, tc.fields, got, "%+v", e.Error)
		})
	}
	// Nothing was saved by any refused request.
	pg := decodeAs[page[app.Prompt]](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.EqualValues(t, 1, pg.Total, "only the inline prompt of the deployment")
	errorOf(t, b.do(t, "POST", path, map[string]any{"name": "p"}), http.StatusBadRequest)
}

// TestConcurrentVersionSaves: 50 saves at once get 50 distinct numbers.
func TestConcurrentVersionSaves(t *testing.T) {
	t.Parallel()
	b, p := promptSetup(t)
	pr := b.createPrompt(t, p.ID, "busy", nil)
	const n = 50
	var wg sync.WaitGroup
	numbers := make([]int32, n)
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc := promptDoc("llm", map[string]any{"system_prompt": "Version from writer " + strconv.Itoa(i)})
			r := b.do(t, "POST", "/api/prompts/"+pr.ID.String()+"/versions", map[string]any{"document": doc})
			statuses[i] = r.status
			if r.status == http.StatusCreated {
				v := decodeAs[versionOut](t, r, http.StatusCreated)
				numbers[i] = v.Version
			}
		}()
	}
	wg.Wait()
	seen := map[int32]bool{}
	for i, v := range numbers {
		require.Equal(t, http.StatusCreated, statuses[i])
		require.False(t, seen[v], "version %d given twice", v)
		seen[v] = true
		require.True(t, v >= 2 && v <= n+1, "version %d", v)
	}
	got := decodeAs[promptOut](t, b.do(t, "GET", "/api/prompts/"+pr.ID.String(), nil), http.StatusOK)
	require.EqualValues(t, n+1, got.LatestVersion)
	// Each number holds the document its save sent.
	for i, v := range numbers {
		one := decodeAs[versionOut](t, b.do(t, "GET", fmt.Sprintf("/api/prompts/%s/versions/%d", pr.ID, v), nil), http.StatusOK)
		require.Equal(t, "Version from writer "+strconv.Itoa(i), one.Document["system_prompt"])
	}
}

// crashAfterPut stores a document, then fails as a process crashing
// between the document write and the metadata write would.
type crashAfterPut struct {
	app.Documents
	crash bool
	mu    sync.Mutex
}

func (c *crashAfterPut) Put(ctx context.Context, key string, doc []byte) error {
	if err := c.Documents.Put(ctx, key, doc); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crash {
		c.crash = false
		return errors.New("crashed after the document was written")
	}
	return nil
}

func TestCrashBetweenDocumentAndMetadataLeavesNoVersion(t *testing.T) {
	t.Parallel()
	docs := &crashAfterPut{Documents: statestoretest.Store(t)}
	b, p := promptSetup(t, func(c *app.Config) { c.Documents = docs })
	pr := b.createPrompt(t, p.ID, "fragile", nil)

	docs.crash = true
	r := b.do(t, "POST", "/api/prompts/"+pr.ID.String()+"/versions", map[string]any{"document": promptDoc("llm", map[string]any{"system_prompt": "orphan"})})
	errorOf(t, r, http.StatusInternalServerError)
	got := decodeAs[promptOut](t, b.do(t, "GET", "/api/prompts/"+pr.ID.String(), nil), http.StatusOK)
	require.EqualValues(t, 1, got.LatestVersion, "no version is visible")
	errorOf(t, b.do(t, "GET", "/api/prompts/"+pr.ID.String()+"/versions/2", nil), http.StatusNotFound)

	// The next save takes the number and replaces the orphan document.
	v := decodeAs[versionOut](t, b.do(t, "POST", "/api/prompts/"+pr.ID.String()+"/versions", map[string]any{"document": promptDoc("llm", map[string]any{"system_prompt": "real"})}), http.StatusCreated)
	require.EqualValues(t, 2, v.Version)
	one := decodeAs[versionOut](t, b.do(t, "GET", "/api/prompts/"+pr.ID.String()+"/versions/2", nil), http.StatusOK)
	require.Equal(t, "real", one.Document["system_prompt"])
}

func TestStateStoreDownIs503(t *testing.T) {
	t.Parallel()
	dead, err := statestore.NewStore("127.0.0.1:1", statestore.StoreName)
	require.NoError(t, err)
	t.Cleanup(func() { _ = dead.Close() })
	b, p := promptSetup(t, func(c *app.Config) { c.Documents = dead })
	e := errorOf(t, b.do(t, "POST", "/api/projects/"+p.ID.String()+"/prompts", map[string]any{"name": "x", "document": promptDoc("llm", nil)}), http.StatusServiceUnavailable)
	require.Equal(t, bud.EUNAVAILABLE, e.Error.Code)
	require.Contains(t, e.Error.Message, "Dapr")
	pg := decodeAs[page[app.Prompt]](t, b.do(t, "GET", "/api/prompts", nil), http.StatusOK)
	require.Zero(t, pg.Total, "nothing half-written")
}

func TestPromptDeployments(t *testing.T) {
	t.Parallel()
	b, p := promptSetup(t)
	pr := b.createPrompt(t, p.ID, "greeter", nil)
	base := "/api/projects/" + p.ID.String() + "/deployments"

	// From an existing prompt: the name defaults to the prompt's.
	d := b.createDeployment(t, p.ID, map[string]any{"kind": "prompt", "prompt_id": pr.ID})
	require.Equal(t, "greeter", d.Name)
	require.Equal(t, bud.KindPrompt, d.Kind)
	require.Nil(t, d.Upstream)
	require.Equal(t, pr.ID, d.Prompt.ID)
	require.Nil(t, d.Prompt.Version, "follows the default version")

	// Pinned to a version, under another name.
	decodeAs[versionOut](t, b.do(t, "POST", "/api/prompts/"+pr.ID.String()+"/versions", map[string]any{"document": promptDoc("llm", nil)}), http.StatusCreated)
	pinned := b.createDeployment(t, p.ID, map[string]any{"kind": "prompt", "prompt_id": pr.ID, "version": 2, "name": "greeter-v2"})
	require.EqualValues(t, 2, *pinned.Prompt.Version)
	e := errorOf(t, b.do(t, "POST", base, map[string]any{"kind": "prompt", "prompt_id": pr.ID, "version": 7, "name": "x"}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "version")

	// Unpin and repin through PATCH.
	un := decodeAs[bud.Deployment](t, b.do(t, "PATCH", base+"/"+pinned.ID.String(), map[string]any{"version": nil}), http.StatusOK)
	require.Nil(t, un.Prompt.Version)
	re := decodeAs[bud.Deployment](t, b.do(t, "PATCH", base+"/"+pinned.ID.String(), map[string]any{"version": 1}), http.StatusOK)
	require.EqualValues(t, 1, *re.Prompt.Version)

	// A whole new prompt inline (the home-page flow names the project too).
	inline := b.createDeployment(t, p.ID, map[string]any{"kind": "prompt", "prompt": map[string]any{"name": "fresh", "tags": []string{"new"}, "document": promptDoc("llm", nil)}})
	require.Equal(t, "fresh", inline.Name)
	created := decodeAs[promptOut](t, b.do(t, "GET", "/api/prompts/"+inline.Prompt.ID.String(), nil), http.StatusOK)
	require.Equal(t, []string{"new"}, created.Tags)
	e = errorOf(t, b.do(t, "POST", base, map[string]any{"kind": "prompt", "prompt": map[string]any{"name": "bad", "document": promptDoc("nope", nil)}}), http.StatusUnprocessableEntity)
	require.Contains(t, e.Error.Fields, "prompt.document.deployment")

	// A prompt of another project is deployed only as a copy
	// (TestPromptDeployAcrossProjects); an unknown one is not found.
	other := b.createProject(t, "other")
	e = errorOf(t, b.do(t, "POST", "/api/projects/"+other.ID.String()+"/deployments", map[string]any{"kind": "prompt", "prompt_id": pr.ID}), http.StatusUnprocessableEntity)
	require.Contains(t, e.Error.Fields, "copy")
	e = errorOf(t, b.do(t, "POST", base, map[string]any{"kind": "prompt", "prompt_id": uuid.NewString()}), http.StatusNotFound)
	require.Contains(t, e.Error.Fields, "prompt_id")

	// Deleting the prompt removes its deployments.
	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", "/api/prompts/"+pr.ID.String(), nil).status)
	errorOf(t, b.do(t, "GET", base+"/"+d.ID.String(), nil), http.StatusNotFound)
	errorOf(t, b.do(t, "GET", base+"/"+pinned.ID.String(), nil), http.StatusNotFound)
	decodeAs[bud.Deployment](t, b.do(t, "GET", base+"/"+inline.ID.String(), nil), http.StatusOK)
}

func TestPromptSchemaIsPublished(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, "GET", "/api/prompts/schema", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), "2020-12")
	require.Contains(t, string(r.body), "allow_multiple_calls")
}

// A prompt deployment created without settings of its own takes its
// document's: the settings the author gave the prompt are the ones it is
// served with. Settings given with the deployment win; an autoscale in a
// document is refused as in a deployment.
func TestPromptDeploymentTakesDocumentSettings(t *testing.T) {
	t.Parallel()
	b, p := promptSetup(t)
	base := "/api/projects/" + p.ID.String() + "/deployments"
	docSettings := map[string]any{"min_concurrency": 2, "max_concurrency": 9, "queue_timeout_ms": 250,
		"cache":      map[string]any{"enabled": true, "ttl_seconds": 60},
		"rate_limit": map[string]any{"enabled": true, "requests_per_minute": 30, "burst": 5}}
	want := bud.Settings{MinConcurrency: 2, MaxConcurrency: 9, QueueTimeoutMS: 250,
		Cache:     bud.CacheSettings{Enabled: true, TTLSeconds: 60},
		RateLimit: bud.RateLimitSettings{Enabled: true, RequestsPerMinute: 30, Burst: 5}}

	pr := decodeAs[promptOut](t, b.do(t, "POST", "/api/projects/"+p.ID.String()+"/prompts",
		map[string]any{"name": "tuned", "document": promptDoc("llm", map[string]any{"settings": docSettings})}), http.StatusCreated)
	d := b.createDeployment(t, p.ID, map[string]any{"kind": "prompt", "prompt_id": pr.ID})
	require.Equal(t, want, d.Settings, "the default version's document's settings")

	// Pinned to version 2, whose document has other settings: those.
	decodeAs[versionOut](t, b.do(t, "POST", "/api/prompts/"+pr.ID.String()+"/versions",
		map[string]any{"document": promptDoc("llm", map[string]any{"settings": map[string]any{"max_concurrency": 3}})}), http.StatusCreated)
	v2 := b.createDeployment(t, p.ID, map[string]any{"kind": "prompt", "prompt_id": pr.ID, "version": 2, "name": "tuned-v2"})
	require.Equal(t, 3, v2.Settings.MaxConcurrency)
	require.False(t, v2.Settings.RateLimit.Enabled)

	// Inline, and with settings of its own, which win.
	inline := b.createDeployment(t, p.ID, map[string]any{"kind": "prompt", "prompt": map[string]any{"name": "inline",
		"document": promptDoc("llm", map[string]any{"settings": docSettings})}})
	require.Equal(t, want, inline.Settings)
	own := b.createDeployment(t, p.ID, map[string]any{"kind": "prompt", "prompt_id": pr.ID, "name": "own",
		"settings": map[string]any{"max_concurrency": 4}})
	require.Equal(t, bud.Settings{MaxConcurrency: 4}, own.Settings)

	// autoscale: true is refused in a document, by its path.
	e := errorOf(t, b.do(t, "POST", base, map[string]any{"kind": "prompt", "prompt": map[string]any{"name": "scaled",
		"document": promptDoc("llm", map[string]any{"settings": map[string]any{"autoscale": true}})}}), http.StatusUnprocessableEntity)
	require.Contains(t, e.Error.Fields, "prompt.document.settings.autoscale")
}
