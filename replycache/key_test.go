package replycache_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/run"
)

var (
	cacheOn = bud.CacheSettings{Enabled: true, TTLSeconds: 60}
	gen     = replycache.Generation{ID: uuid.MustParse("0195f4a6-9a53-7c3e-9d1f-4b2a7e1c0d01"), UpdatedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
)

func chatKey(t *testing.T, c *replycache.Cache, g replycache.Generation, body string) string {
	t.Helper()
	q := c.Chat(cacheOn, g, []byte(body), nil)
	require.NotNil(t, q, "cacheable: %s", body)
	return q.Key()
}

// TestChatKeysAreCanonical: requests every JSON reader takes for the same
// request share a key; requests that may be answered differently do not.
func TestChatKeysAreCanonical(t *testing.T) {
	t.Parallel()
	c := replycache.New(replycache.NewMemory(0), replycache.Options{Prefix: "p:"})
	base := `{"model":"m","messages":[{"role":"user","content":"Hi /"}],"max_tokens":5}`
	key := chatKey(t, c, gen, base)
	require.Regexp(t, `^p:chat:[0-9a-f]{64}$`, key)

	for name, body := range map[string]string{
		"key order":                `{"max_tokens":5,"messages":[{"content":"Hi /","role":"user"}],"model":"m"}`,
		"whitespace":               " {\n\t\"model\" : \"m\",\r\n \"messages\" : [ { \"role\" : \"user\" , \"content\" : \"Hi /\" } ] , \"max_tokens\" : 5 }\n",
		"escapes":                  `{"model":"m","messages":[{"role":"\u0075ser","content":"Hi \/"}],"max_tokens":5}`,
		"escaped key":              `{"model":"m","messages":[{"r\u006fle":"user","content":"Hi /"}],"max_tokens":5}`,
		"repeated key, last":       `{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"Hi /"}],"max_tokens":5}`,
		"another model name":       `{"model":"other","messages":[{"role":"user","content":"Hi /"}],"max_tokens":5}`,
		"user and metadata":        `{"model":"m","messages":[{"role":"user","content":"Hi /"}],"max_tokens":5,"user":"u-1","metadata":{"a":"b"},"store":true,"safety_identifier":"x","prompt_cache_key":"k"}`,
		"stream false":             `{"model":"m","messages":[{"role":"user","content":"Hi /"}],"max_tokens":5,"stream":false}`,
		"stream null":              `{"model":"m","messages":[{"role":"user","content":"Hi /"}],"max_tokens":5,"stream":null}`,
		"options without a stream": `{"model":"m","messages":[{"role":"user","content":"Hi /"}],"max_tokens":5,"stream_options":{"include_usage":true}}`,
	} {
		require.Equal(t, key, chatKey(t, c, gen, body), name)
	}

	seen := map[string]string{key: "base"}
	for name, k := range map[string]string{
		"other content":        chatKey(t, c, gen, `{"model":"m","messages":[{"role":"user","content":"Hi!"}],"max_tokens":5}`),
		"number as written":    chatKey(t, c, gen, `{"model":"m","messages":[{"role":"user","content":"Hi /"}],"max_tokens":5.0}`),
		"message order":        chatKey(t, c, gen, `{"model":"m","messages":[{"role":"user","content":"Hi /"},{"role":"user","content":"x"}],"max_tokens":5}`),
		"a stream":             chatKey(t, c, gen, `{"model":"m","messages":[{"role":"user","content":"Hi /"}],"max_tokens":5,"stream":true}`),
		"a stream with usage":  chatKey(t, c, gen, `{"model":"m","messages":[{"role":"user","content":"Hi /"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`),
		"a changed deployment": chatKey(t, c, replycache.Generation{ID: gen.ID, UpdatedAt: gen.UpdatedAt.Add(time.Microsecond)}, base),
		"another deployment":   chatKey(t, c, replycache.Generation{ID: uuid.New(), UpdatedAt: gen.UpdatedAt}, base),
		"another prefix":       chatKey(t, replycache.New(replycache.NewMemory(0), replycache.Options{Prefix: "q:"}), gen, base),
		"another endpoint":     c.Model(replycache.KindCompletions, cacheOn, gen, []byte(base), nil).Key(),
	} {
		require.NotContains(t, seen, k, "%s has the key of %s", name, seen[k])
		seen[k] = name
	}
}

// TestChatNotCacheable: the cache keeps out of requests it must not
// answer, and of bodies it cannot read.
func TestChatNotCacheable(t *testing.T) {
	t.Parallel()
	c := replycache.New(replycache.NewMemory(0), replycache.Options{})
	body := []byte(`{"model":"m","messages":[]}`)
	require.Nil(t, c.Chat(bud.CacheSettings{TTLSeconds: 60}, gen, body, nil), "disabled")
	require.Nil(t, c.Chat(bud.CacheSettings{Enabled: true}, gen, body, nil), "no TTL")
	require.NotNil(t, c.Chat(cacheOn, gen, body, nil))
	for _, bad := range []string{``, `[]`, `"x"`, `{"model":}`, `{"model":"m"`, `{"model":"m"} {}`, `{"a":01}`, `{"a":"\x01"}`} {
		require.Nil(t, c.Chat(cacheOn, gen, []byte(bad), nil), bad)
	}
	require.Nil(t, c.Chat(cacheOn, gen, []byte(`{"model":"m","temperature":0.7}`), nil), "sampling")
}

// TestCacheable is the determinism rule: a request that samples
// (temperature > 0, no seed) is cached only when the deployment says so.
func TestCacheable(t *testing.T) {
	t.Parallel()
	defaults := func(s string) map[string]json.RawMessage {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(s), &m))
		return m
	}
	nondeterministic := bud.CacheSettings{Enabled: true, TTLSeconds: 60, Nondeterministic: true}
	for _, tc := range []struct {
		name     string
		settings bud.CacheSettings
		params   string
		defaults map[string]json.RawMessage
		want     bool
	}{
		{"no temperature", cacheOn, `{"messages":[]}`, nil, true},
		{"no params at all", cacheOn, ``, nil, true},
		{"temperature 0", cacheOn, `{"temperature":0}`, nil, true},
		{"temperature 0.0", cacheOn, `{"temperature":0.0}`, nil, true},
		{"temperature null", cacheOn, `{"temperature":null}`, nil, true},
		{"sampling", cacheOn, `{"temperature":0.7}`, nil, false},
		{"sampling with a seed", cacheOn, `{"temperature":0.7,"seed":42}`, nil, true},
		{"sampling with a null seed", cacheOn, `{"temperature":0.7,"seed":null}`, nil, false},
		{"sampling, said explicitly", nondeterministic, `{"temperature":0.7}`, nil, true},
		{"sampling by default", cacheOn, `{}`, defaults(`{"temperature": 0.7}`), false},
		{"sampling by default, seed by default", cacheOn, `{}`, defaults(`{"temperature": 0.7, "seed": 1}`), true},
		{"the caller's temperature wins", cacheOn, `{"temperature":0}`, defaults(`{"temperature": 0.7}`), true},
		{"the caller's null wins", cacheOn, `{"temperature":null}`, defaults(`{"temperature": 0.7}`), true},
		{"the caller's seed", cacheOn, `{"seed":3}`, defaults(`{"temperature": 0.7}`), true},
		{"the caller samples over a default 0", cacheOn, `{"temperature":1}`, defaults(`{"temperature": 0}`), false},
		{"several choices, deterministic", cacheOn, `{"n":3,"temperature":0}`, nil, true},
		{"several choices, sampling", cacheOn, `{"n":3,"temperature":1}`, nil, false},
		{"not a number", cacheOn, `{"temperature":"hot"}`, nil, false},
		{"repeated, last wins", cacheOn, `{"temperature":0,"temperature":0.5}`, nil, false},
		{"another spelling samples", cacheOn, `{"Temperature":0.5}`, nil, false},
		{"another spelling at 0", cacheOn, `{"TEMPERATURE":0}`, nil, true},
		{"a seed of another spelling is no seed", cacheOn, `{"temperature":0.5,"Seed":1}`, nil, false},
		{"disabled", bud.CacheSettings{TTLSeconds: 60, Nondeterministic: true}, `{}`, nil, false},
		{"not an object", nondeterministic, `[1]`, nil, false},
	} {
		require.Equal(t, tc.want, replycache.Cacheable(tc.settings, []byte(tc.params), tc.defaults), tc.name)
	}
}

func promptInput() run.Input {
	return run.Input{
		ResponseID:    "resp_first",
		ProjectID:     uuid.MustParse("0195f4a6-9a53-7c3e-9d1f-4b2a7e1c0d02"),
		PromptID:      uuid.MustParse("0195f4a6-9a53-7c3e-9d1f-4b2a7e1c0d03"),
		PromptVersion: 3,
		Deployment:    "support-bot",
		Document:      json.RawMessage(`{"deployment":"m"}`),
		Variables:     map[string]any{"name": "Ada", "age": 36.0, "tags": []any{"a", "b"}},
		InputItems:    json.RawMessage(`[{"role":"user","content":"Hi"}]`),
		Metadata:      map[string]string{"trace": "1"},
		Source:        run.SourceAPI,
	}
}

// TestPromptKeys: the version, variables, input and instructions make the
// key; who asks and with which metadata do not.
func TestPromptKeys(t *testing.T) {
	t.Parallel()
	c := replycache.New(replycache.NewMemory(0), replycache.Options{Prefix: "p:"})
	model := replycache.Generation{ID: uuid.New(), UpdatedAt: gen.UpdatedAt}
	key := func(in run.Input, gens ...replycache.Generation) string {
		q := c.Prompt(cacheOn, in, nil, nil, gens...)
		require.NotNil(t, q)
		return q.Key()
	}
	base := key(promptInput(), gen, model)
	require.Regexp(t, `^p:prompt:[0-9a-f]{64}$`, base)

	same := promptInput()
	same.ResponseID = "resp_second"
	same.Metadata = map[string]string{"other": "x"}
	same.Variables = map[string]any{"tags": []any{"a", "b"}, "age": 36.0, "name": "Ada"}
	same.InputItems = json.RawMessage(` [ { "content" : "Hi", "role" : "user" } ] `)
	same.Source = run.SourcePlayground
	same.Document = json.RawMessage(`{"deployment":"another document of the same version cannot exist"}`)
	require.Equal(t, base, key(same, gen, model))

	seen := map[string]string{base: "base"}
	changed := func(name string, change func(*run.Input), gens ...replycache.Generation) {
		in := promptInput()
		change(&in)
		if gens == nil {
			gens = []replycache.Generation{gen, model}
		}
		k := key(in, gens...)
		require.NotContains(t, seen, k, "%s has the key of %s", name, seen[k])
		seen[k] = name
	}
	changed("project", func(in *run.Input) { in.ProjectID = uuid.New() })
	changed("prompt", func(in *run.Input) { in.PromptID = uuid.New() })
	changed("version", func(in *run.Input) { in.PromptVersion = 4 })
	changed("variables", func(in *run.Input) { in.Variables["name"] = "Grace" })
	changed("text", func(in *run.Input) { in.Text = "hello" })
	changed("items", func(in *run.Input) { in.InputItems = json.RawMessage(`[{"role":"user","content":"Hello"}]`) })
	changed("instructions", func(in *run.Input) { in.Instructions = "Be brief." })
	changed("ending at a pause", func(in *run.Input) { in.EndAtPause = true })
	changed("a replay", func(in *run.Input) { in.ReplayOf, in.ReplayTools = "resp_old", run.ReplayToolsRecorded })
	changed("a changed model deployment", func(*run.Input) {}, gen, replycache.Generation{ID: model.ID, UpdatedAt: model.UpdatedAt.Add(time.Second)})
	changed("a changed prompt deployment", func(*run.Input) {}, replycache.Generation{ID: gen.ID, UpdatedAt: gen.UpdatedAt.Add(time.Second)}, model)

	// A document never saved is its own version.
	unsaved := promptInput()
	unsaved.PromptID, unsaved.PromptVersion = uuid.Nil, 0
	k1 := key(unsaved, model)
	unsaved.Document = json.RawMessage(`{ "deployment" : "m" }`)
	require.Equal(t, k1, key(unsaved, model), "the same document, written otherwise")
	unsaved.Document = json.RawMessage(`{"deployment":"m","system_prompt":"x"}`)
	require.NotEqual(t, k1, key(unsaved, model))

	require.Nil(t, c.Prompt(cacheOn, promptInput(), []byte(`{"temperature":1}`), nil), "a prompt that samples")
	require.Nil(t, c.Prompt(bud.CacheSettings{}, promptInput(), nil, nil), "caching off")
	bad := promptInput()
	bad.InputItems = json.RawMessage(`[`)
	require.Nil(t, c.Prompt(cacheOn, bad, nil, nil))
}
