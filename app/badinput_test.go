package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
	"github.com/budhq/bud/app"
)

// badInput is one request an endpoint must refuse.
type badInput struct {
	name        string
	body        string
	contentType string // "" means application/json
	status      int    // 0 means 400
	code        string // "" means invalid
	field       string // the field named in error.fields; "" when the body as a whole is at fault
	message     string // a part of error.message, if it matters
}

// bodyProblems are the ways any JSON body can be wrong before its fields
// are even read.
func bodyProblems() []badInput {
	huge := `{"name":"` + strings.Repeat("a", app.DefaultMaxBodyBytes) + `"}`
	return []badInput{
		{name: "truncated JSON", body: `{"name":`, message: "invalid JSON at offset 8"},
		{name: "syntax error", body: `{"name":"a",}`, message: "invalid JSON at offset 13"},
		{name: "trailing data", body: `{"name":"a"} {"name":"b"}`, message: "invalid JSON at offset 13"},
		{name: "empty body", body: ``, message: "body is required"},
		{name: "blank body", body: " \n"},
		{name: "array body", body: `["a"]`, message: "must be a JSON object"},
		{name: "null body", body: `null`, message: "must be a JSON object"},
		{name: "not JSON content type", body: `{"name":"a"}`, contentType: "text/plain", message: "Content-Type"},
		{name: "over the limit", body: huge, status: http.StatusRequestEntityTooLarge, code: "payload_too_large"},
	}
}

func runBadInput(t *testing.T, b *bundle, method, path string, cases []badInput) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ct := c.contentType
			if ct == "" {
				ct = "application/json"
			}
			status, code := c.status, c.code
			if status == 0 {
				status = http.StatusBadRequest
			}
			if code == "" {
				code = "invalid"
			}
			r := b.do(t, method, path, c.body, withHeader("Content-Type", ct))
			e := errorOf(t, r, status)
			require.Equal(t, code, e.Error.Code)
			if c.field != "" {
				require.Contains(t, e.Error.Fields, c.field, "message: %s", e.Error.Message)
			} else {
				require.Empty(t, e.Error.Fields)
			}
			require.Contains(t, e.Error.Message, c.message)
		})
	}
}

func TestBadInputCreateProject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := append(bodyProblems(), []badInput{
		{name: "unknown field", body: `{"name":"a","owner":"me"}`, field: "owner"},
		{name: "name of wrong type", body: `{"name":5}`, field: "name", message: "must be a string"},
		{name: "description of wrong type", body: `{"name":"a","description":["x"]}`, field: "description"},
		{name: "missing name", body: `{"description":"x"}`, field: "name"},
		{name: "empty name", body: `{"name":""}`, field: "name"},
		{name: "name with spaces", body: `{"name":"my project"}`, field: "name"},
		{name: "over-long name", body: fmt.Sprintf(`{"name":%q}`, strings.Repeat("n", 101)), field: "name"},
		{name: "over-long description", body: fmt.Sprintf(`{"name":"a","description":%q}`, strings.Repeat("d", 2001)), field: "description"},
	}...)
	runBadInput(t, b, "POST", "/api/projects", cases)

	list := decodeAs[page[bud.Project]](t, b.do(t, "GET", "/api/projects", nil), http.StatusOK)
	require.Zero(t, list.Total, "nothing was created")

	// The limits are inclusive.
	b.do(t, "POST", "/api/projects", map[string]any{"name": strings.Repeat("n", 100), "description": strings.Repeat("d", 2000)})
	list = decodeAs[page[bud.Project]](t, b.do(t, "GET", "/api/projects", nil), http.StatusOK)
	require.EqualValues(t, 1, list.Total)
}

func TestBadInputPatchProject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	path := "/api/projects/" + p.ID.String()
	cases := append(bodyProblems(), []badInput{
		{name: "unknown field", body: `{"id":"x"}`, field: "id"},
		{name: "name of wrong type", body: `{"name":5}`, field: "name"},
		{name: "description of wrong type", body: `{"description":true}`, field: "description", message: "must be a string"},
		{name: "empty name", body: `{"name":""}`, field: "name"},
		{name: "over-long name", body: fmt.Sprintf(`{"name":%q}`, strings.Repeat("n", 101)), field: "name"},
		{name: "over-long description", body: fmt.Sprintf(`{"description":%q}`, strings.Repeat("d", 2001)), field: "description"},
	}...)
	runBadInput(t, b, "PATCH", path, cases)

	got := decodeAs[bud.Project](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Equal(t, p.Name, got.Name, "unchanged")
	require.Equal(t, p.Description, got.Description)
}

// deploymentBadInput are the refusals POST and PATCH of a deployment share.
func deploymentBadInput() []badInput {
	return []badInput{
		{name: "unknown field", body: `{"name":"a","replicas":3}`, field: "replicas"},
		{name: "unknown upstream field", body: `{"upstream":{"url":"https://a.example"}}`, field: "upstream.url"},
		{name: "unknown settings field", body: `{"settings":{"gpu":true}}`, field: "settings.gpu"},
		{name: "unknown nested settings field", body: `{"settings":{"cache":{"size":1}}}`, field: "settings.cache.size"},
		{name: "name of wrong type", body: `{"name":5}`, field: "name", message: "must be a string"},
		{name: "max_concurrency of wrong type", body: `{"settings":{"max_concurrency":"x"}}`, field: "settings.max_concurrency", message: "must be an integer"},
		{name: "fractional ttl", body: `{"settings":{"cache":{"ttl_seconds":1.5}}}`, field: "settings.cache.ttl_seconds"},
		{name: "autoscale of wrong type", body: `{"settings":{"autoscale":"yes"}}`, field: "settings.autoscale", message: "must be a boolean"},
		{name: "settings not an object", body: `{"settings":"fast"}`, field: "settings", message: "must be an object"},
		{name: "upstream not an object", body: `{"upstream":"https://a.example"}`, field: "upstream"},
		{name: "model of wrong type", body: `{"upstream":{"model":4}}`, field: "upstream.model"},
		{name: "over-long name", body: fmt.Sprintf(`{"name":%q}`, strings.Repeat("n", 101)), field: "name"},
		{name: "bad base_url scheme", body: `{"upstream":{"base_url":"ftp://a.example"}}`, field: "upstream.base_url"},
		{name: "relative base_url", body: `{"upstream":{"base_url":"/v1"}}`, field: "upstream.base_url"},
		{name: "base_url with query", body: `{"upstream":{"base_url":"https://a.example/v1?x=1"}}`, field: "upstream.base_url"},
		{name: "over-long api key", body: fmt.Sprintf(`{"upstream":{"api_key":%q}}`, strings.Repeat("k", 4097)), field: "upstream.api_key"},
		{name: "min above max", body: `{"settings":{"min_concurrency":5,"max_concurrency":2}}`, field: "settings.min_concurrency"},
		{name: "max zero", body: `{"settings":{"max_concurrency":0}}`, field: "settings.max_concurrency"},
		{name: "negative min", body: `{"settings":{"min_concurrency":-1}}`, field: "settings.min_concurrency"},
		{name: "cache on without ttl", body: `{"settings":{"cache":{"enabled":true,"ttl_seconds":0}}}`, field: "settings.cache.ttl_seconds"},
		{name: "rate limit on without rpm", body: `{"settings":{"rate_limit":{"enabled":true,"requests_per_minute":0}}}`, field: "settings.rate_limit.requests_per_minute"},
		{name: "negative tpm", body: `{"settings":{"rate_limit":{"enabled":true,"tokens_per_minute":-1}}}`, field: "settings.rate_limit.tokens_per_minute"},
		{name: "tpm too high", body: `{"settings":{"rate_limit":{"enabled":true,"tokens_per_minute":10000000001}}}`, field: "settings.rate_limit.tokens_per_minute"},
		{name: "burst without rpm", body: `{"settings":{"rate_limit":{"enabled":true,"tokens_per_minute":1000,"burst":5}}}`, field: "settings.rate_limit.burst"},
		{name: "queue timeout too long", body: `{"settings":{"queue_timeout_ms":60001}}`, field: "settings.queue_timeout_ms"},
		{name: "negative queue timeout", body: `{"settings":{"queue_timeout_ms":-1}}`, field: "settings.queue_timeout_ms"},
		{name: "temperature too high", body: `{"default_params":{"temperature":3}}`, field: "default_params.temperature"},
		{name: "temperature of wrong type", body: `{"default_params":{"temperature":"hot"}}`, field: "default_params.temperature"},
		{name: "model as a default", body: `{"default_params":{"model":"gpt-4o"}}`, field: "default_params.model"},
		{name: "messages as a default", body: `{"default_params":{"messages":[]}}`, field: "default_params.messages"},
		{name: "default_params not an object", body: `{"default_params":[1]}`, field: "default_params"},
	}
}

// completeDeployment adds what a create needs to a row's body, so that
// each row has exactly one thing wrong: a name if it has none, and an
// upstream's base_url and model (the row's own members come later in the
// object, and the last of equal keys wins).
func completeDeployment(body string) string {
	const upstream = `"base_url":"https://a.example","model":"m"`
	switch {
	case strings.Contains(body, `"upstream":{`):
		body = strings.Replace(body, `"upstream":{`, `"upstream":{`+upstream+`,`, 1)
	case !strings.Contains(body, `"upstream"`):
		body = strings.TrimSuffix(body, "}") + `,"upstream":{` + upstream + `}}`
	}
	if !strings.Contains(body, `"name"`) {
		body = `{"name":"ok",` + strings.TrimPrefix(body, "{")
	}
	return body
}

func TestBadInputCreateDeployment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	var cases []badInput
	for _, c := range deploymentBadInput() {
		c.body = completeDeployment(c.body)
		cases = append(cases, c)
	}
	cases = append(cases, []badInput{
		{name: "missing name", body: `{"upstream":{"base_url":"https://a.example","model":"m"}}`, field: "name"},
		{name: "missing upstream", body: `{"name":"ok"}`, field: "upstream.base_url"},
		{name: "missing upstream model", body: `{"name":"ok","upstream":{"base_url":"https://a.example"}}`, field: "upstream.model"},
		{name: "missing upstream base_url", body: `{"name":"ok","upstream":{"model":"m"}}`, field: "upstream.base_url"},
		{name: "over-long upstream model", body: fmt.Sprintf(`{"name":"ok","upstream":{"base_url":"https://a.example","model":%q}}`, strings.Repeat("m", 257)), field: "upstream.model"},
		{name: "prompt kind with an upstream", body: `{"name":"ok","kind":"prompt","upstream":{"base_url":"https://a.example","model":"m"}}`, field: "upstream", message: "upstream"},
		{name: "prompt kind without a prompt", body: `{"name":"ok","kind":"prompt"}`, field: "prompt_id"},
		{name: "prompt_id not a UUID", body: `{"name":"ok","kind":"prompt","prompt_id":"nope"}`, field: "prompt_id"},
		{name: "model kind with a prompt", body: `{"name":"ok","kind":"model","prompt_id":"7f1c4a5e-0000-4000-8000-000000000000","upstream":{"base_url":"https://a.example","model":"m"}}`, field: "kind"},
		{name: "unknown kind", body: `{"name":"ok","kind":"agent","upstream":{"base_url":"https://a.example","model":"m"}}`, field: "kind"},
	}...)
	cases = append(cases, bodyProblems()...)
	runBadInput(t, b, "POST", deploymentsPath(p.ID), cases)

	list := decodeAs[page[bud.Deployment]](t, b.do(t, "GET", deploymentsPath(p.ID), nil), http.StatusOK)
	require.Zero(t, list.Total, "nothing was created")

	// Every problem is reported at once.
	e := errorOf(t, b.do(t, "POST", deploymentsPath(p.ID), `{"name":"","settings":{"min_concurrency":9,"max_concurrency":1}}`), http.StatusBadRequest)
	for _, f := range []string{"name", "upstream.base_url", "upstream.model", "settings.min_concurrency"} {
		require.Contains(t, e.Error.Fields, f)
	}
}

func TestBadInputPatchDeployment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	d := b.createDeployment(t, p.ID, modelBody("dep", nil))
	path := deploymentsPath(p.ID) + "/" + d.ID.String()
	cases := append(deploymentBadInput(), []badInput{
		{name: "kind is fixed", body: `{"kind":"model"}`, field: "kind"},
		{name: "empty name", body: `{"name":""}`, field: "name"},
		{name: "empty model", body: `{"upstream":{"model":""}}`, field: "upstream.model"},
		{name: "empty base_url", body: `{"upstream":{"base_url":""}}`, field: "upstream.base_url"},
	}...)
	cases = append(cases, bodyProblems()...)
	runBadInput(t, b, "PATCH", path, cases)

	got := decodeAs[bud.Deployment](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Equal(t, d.Name, got.Name, "unchanged")
	require.Equal(t, d.Upstream, got.Upstream)
	require.Equal(t, d.Settings, got.Settings)
}

func TestBadInputCreateAPIKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	cases := append(bodyProblems(), []badInput{
		{name: "unknown field", body: `{"name":"k","scopes":["all"]}`, field: "scopes"},
		{name: "name of wrong type", body: `{"name":5}`, field: "name"},
		{name: "expires_at of wrong type", body: `{"name":"k","expires_at":1700000000}`, field: "expires_at", message: "must be a string"},
		{name: "missing name", body: `{}`, field: "name"},
		{name: "blank name", body: `{"name":"   "}`, field: "name"},
		{name: "over-long name", body: fmt.Sprintf(`{"name":%q}`, strings.Repeat("n", 101)), field: "name"},
		{name: "expires_at not a time", body: `{"name":"k","expires_at":"tomorrow"}`, field: "expires_at"},
		{name: "expires_at without zone", body: `{"name":"k","expires_at":"2999-01-01T00:00:00"}`, field: "expires_at"},
		{name: "expires_at in the past", body: fmt.Sprintf(`{"name":"k","expires_at":%q}`, time.Now().Add(-time.Minute).Format(time.RFC3339)), field: "expires_at", message: "future"},
	}...)
	cases = append(cases, keyLimitBadInput(`"name":"k",`)...)
	runBadInput(t, b, "POST", keysPath(p.ID), cases)

	list := decodeAs[page[bud.APIKey]](t, b.do(t, "GET", keysPath(p.ID), nil), http.StatusOK)
	require.Zero(t, list.Total, "nothing was created")
}

// keyLimitBadInput are the refusals of a key's rate_limit, in a body that
// begins with before.
func keyLimitBadInput(before string) []badInput {
	return []badInput{
		{name: "rate_limit not an object", body: `{` + before + `"rate_limit":60}`, field: "rate_limit"},
		{name: "unknown rate_limit field", body: `{` + before + `"rate_limit":{"requests_per_minute":1,"per_day":5}}`, field: "rate_limit.per_day"},
		{name: "rpm of wrong type", body: `{` + before + `"rate_limit":{"requests_per_minute":"60"}}`, field: "rate_limit.requests_per_minute", message: "must be an integer"},
		{name: "empty rate_limit", body: `{` + before + `"rate_limit":{}}`, field: "rate_limit", message: "null"},
		{name: "negative rpm", body: `{` + before + `"rate_limit":{"requests_per_minute":-1}}`, field: "rate_limit.requests_per_minute"},
		{name: "rpm too high", body: `{` + before + `"rate_limit":{"requests_per_minute":10000001}}`, field: "rate_limit.requests_per_minute"},
		{name: "tpm too high", body: `{` + before + `"rate_limit":{"tokens_per_minute":10000000001}}`, field: "rate_limit.tokens_per_minute"},
		{name: "burst without rpm", body: `{` + before + `"rate_limit":{"tokens_per_minute":100,"burst":3}}`, field: "rate_limit.burst"},
	}
}

func TestBadInputPatchAPIKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	k := b.createKey(t, p.ID, "k")
	path := keysPath(p.ID) + "/" + k.ID.String()
	cases := append(bodyProblems(), []badInput{
		{name: "unknown field", body: `{"expires_at":"2999-01-01T00:00:00Z"}`, field: "expires_at"},
		{name: "blank name", body: `{"name":" "}`, field: "name"},
		{name: "name of wrong type", body: `{"name":5}`, field: "name"},
	}...)
	cases = append(cases, keyLimitBadInput("")...)
	runBadInput(t, b, "PATCH", path, cases)
	got := decodeAs[bud.APIKey](t, b.do(t, "GET", path, nil), http.StatusOK)
	require.Equal(t, "k", got.Name, "unchanged")
	require.Nil(t, got.RateLimit)
}

// A smaller MaxBodyBytes is honoured.
func TestMaxBodyBytes(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *app.Config) { c.MaxBodyBytes = 64 })
	e := errorOf(t, b.do(t, "POST", "/api/projects", fmt.Sprintf(`{"name":"a","description":%q}`, strings.Repeat("d", 64))), http.StatusRequestEntityTooLarge)
	require.Equal(t, "payload_too_large", e.Error.Code)
	require.Contains(t, e.Error.Message, "64 bytes")
	decodeAs[bud.Project](t, b.do(t, "POST", "/api/projects", `{"name":"a"}`), http.StatusCreated)
}

// Problems deep in a body are named by their path, lists included.
func TestBadInputDeepInTheBody(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.createProject(t, "proj")
	runBadInput(t, b, "POST", connectionsPath(p.ID), []badInput{
		{name: "unknown field in a list item", field: "config.operations[1].verb",
			body: `{"name":"api","kind":"http","config":{"base_url":"http://127.0.0.1:1","operations":[
			  {"name":"a","method":"GET","path":"/a"},{"name":"b","method":"GET","path":"/b","verb":"GET"}]}}`},
	})
}
