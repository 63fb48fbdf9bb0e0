package app_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

// Flow 2 across projects: a prompt of one project deployed into another is
// copied there, after its model deployments and connections are found in
// the target, by name or through the request's maps. What is missing is
// one 422 naming each; the copy's documents are validated in the target.
func TestPromptDeployAcrossProjects(t *testing.T) {
	t.Parallel()
	b, src := promptSetup(t)
	b.createDeployment(t, src.ID, modelBody("judge", nil))
	gh := b.createConnection(t, src.ID, mcpBody("gh", "https://x.example/mcp", nil))
	pr := decodeAs[promptOut](t, b.do(t, "POST", "/api/projects/"+src.ID.String()+"/prompts", map[string]any{
		"name": "greeter", "description": "says hello", "tags": []string{"demo"},
		"document": promptDoc("llm", map[string]any{
			"tools":    []any{map[string]any{"type": "connection", "connection_id": gh.ID}},
			"settings": map[string]any{"validation_deployment": "judge"},
		}),
	}), http.StatusCreated)
	decodeAs[versionOut](t, b.do(t, "POST", "/api/prompts/"+pr.ID.String()+"/versions", map[string]any{
		"note": "second", "document": promptDoc("llm", map[string]any{"settings": map[string]any{"max_concurrency": 3}}),
	}), http.StatusCreated)

	dst := b.createProject(t, "target")
	b.createDeployment(t, dst.ID, modelBody("gpt", nil))
	base := "/api/projects/" + dst.ID.String() + "/deployments"
	deploy := func(extra map[string]any) response {
		body := map[string]any{"kind": "prompt", "prompt_id": pr.ID}
		for k, v := range extra {
			body[k] = v
		}
		return b.do(t, "POST", base, body)
	}

	// Another project's prompt is deployed only as a copy.
	e := errorOf(t, deploy(nil), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"copy"}, keysOf(e.Error.Fields))
	// Deploying a prompt of the project itself is no copy.
	e = errorOf(t, b.do(t, "POST", "/api/projects/"+src.ID.String()+"/deployments",
		map[string]any{"kind": "prompt", "prompt_id": pr.ID, "copy": map[string]any{}}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "copy")
	// Malformed copy fields, all at once.
	e = errorOf(t, deploy(map[string]any{"copy": map[string]any{"versions": "some", "name": ""}, "deployment_map": map[string]any{"llm": ""}}), http.StatusBadRequest)
	require.ElementsMatch(t, []string{"copy.versions", "copy.name", "deployment_map.llm"}, keysOf(e.Error.Fields))
	e = errorOf(t, deploy(map[string]any{"connection_map": map[string]any{"gh": "x"}}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "connection_map")

	// Nothing the prompt uses is in the target: each is named.
	e = errorOf(t, deploy(map[string]any{"copy": map[string]any{"versions": "chosen"}, "version": 1}), http.StatusUnprocessableEntity)
	require.ElementsMatch(t, []string{"deployment_map.llm", "deployment_map.judge", "connection_map.gh"}, keysOf(e.Error.Fields))
	require.Contains(t, e.Error.Fields["deployment_map.llm"], `"llm" is not in this project`)

	// Maps to what the target lacks, or from what the prompt doesn't use.
	e = errorOf(t, deploy(map[string]any{"copy": map[string]any{}, "version": 1,
		"deployment_map": map[string]any{"llm": "nope", "judge": "gpt", "zzz": "gpt"},
		"connection_map": map[string]any{"gh": "absent"}}), http.StatusUnprocessableEntity)
	require.ElementsMatch(t, []string{"deployment_map.llm", "deployment_map.zzz", "connection_map.gh"}, keysOf(e.Error.Fields))
	require.Contains(t, e.Error.Fields["deployment_map.llm"], `names "nope"`)
	require.Contains(t, e.Error.Fields["connection_map.gh"], `names "absent"`)

	// Mapped to the target's own: the chosen version is the copy's only one.
	tools := b.createConnection(t, dst.ID, mcpBody("tools", "https://y.example/mcp", nil))
	maps := map[string]any{"deployment_map": map[string]any{"llm": "gpt", "judge": "gpt"}, "connection_map": map[string]any{"gh": "tools"}}
	d := decodeAs[bud.Deployment](t, deploy(map[string]any{"copy": map[string]any{"versions": "chosen"}, "version": 1,
		"deployment_map": maps["deployment_map"], "connection_map": maps["connection_map"]}), http.StatusCreated)
	require.Equal(t, "greeter", d.Name)
	require.Equal(t, dst.ID, d.ProjectID)
	require.NotEqual(t, pr.ID, d.Prompt.ID)
	require.Nil(t, d.Prompt.Version)
	cp := decodeAs[promptOut](t, b.do(t, "GET", "/api/prompts/"+d.Prompt.ID.String(), nil), http.StatusOK)
	require.Equal(t, dst.ID, cp.ProjectID)
	require.Equal(t, "says hello", cp.Description)
	require.Equal(t, []string{"demo"}, cp.Tags)
	require.EqualValues(t, 1, cp.LatestVersion)
	require.Equal(t, "gpt", cp.Document["deployment"])
	require.Equal(t, "gpt", cp.Document["settings"].(map[string]any)["validation_deployment"])
	require.Equal(t, tools.ID.String(), cp.Document["tools"].([]any)[0].(map[string]any)["connection_id"])
	orig := decodeAs[promptOut](t, b.do(t, "GET", "/api/prompts/"+pr.ID.String()+"?version=1", nil), http.StatusOK)
	require.Equal(t, "llm", orig.Document["deployment"], "the source is unchanged")

	// The copy's name is taken now; every version under another name.
	e = errorOf(t, deploy(map[string]any{"copy": map[string]any{}, "version": 1, "name": "g2",
		"deployment_map": maps["deployment_map"], "connection_map": maps["connection_map"]}), http.StatusConflict)
	require.Contains(t, e.Error.Fields, "copy.name")
	all := decodeAs[bud.Deployment](t, deploy(map[string]any{"copy": map[string]any{"versions": "all", "name": "greeter-all"}, "version": 2,
		"deployment_map": maps["deployment_map"], "connection_map": maps["connection_map"]}), http.StatusCreated)
	require.Equal(t, "greeter-all", all.Name)
	require.EqualValues(t, 2, *all.Prompt.Version)
	require.Equal(t, 3, all.Settings.MaxConcurrency, "version 2's document's settings")
	cpAll := decodeAs[promptOut](t, b.do(t, "GET", "/api/prompts/"+all.Prompt.ID.String(), nil), http.StatusOK)
	require.EqualValues(t, 2, cpAll.LatestVersion)
	require.EqualValues(t, 1, cpAll.DefaultVersion, "the source's default")
	v2 := decodeAs[versionOut](t, b.do(t, "GET", "/api/prompts/"+all.Prompt.ID.String()+"/versions/2", nil), http.StatusOK)
	require.Equal(t, "second", v2.Note)
	require.Equal(t, "gpt", v2.Document["deployment"])

	// A name the target has is found without a map; a map the copied
	// version doesn't use is refused.
	b.createDeployment(t, dst.ID, modelBody("llm", nil))
	e = errorOf(t, deploy(map[string]any{"copy": map[string]any{"name": "v2"}, "version": 2, "connection_map": maps["connection_map"]}), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"connection_map.gh"}, keysOf(e.Error.Fields))
	byName := decodeAs[bud.Deployment](t, deploy(map[string]any{"copy": map[string]any{"name": "v2"}, "version": 2}), http.StatusCreated)
	v2Copy := decodeAs[promptOut](t, b.do(t, "GET", "/api/prompts/"+byName.Prompt.ID.String(), nil), http.StatusOK)
	require.Equal(t, "llm", v2Copy.Document["deployment"])

	// The mapped documents are validated in the target: a prompt
	// deployment is no model deployment.
	e = errorOf(t, deploy(map[string]any{"copy": map[string]any{"name": "bad"}, "version": 2, "deployment_map": map[string]any{"llm": "greeter"}}), http.StatusUnprocessableEntity)
	require.Contains(t, e.Error.Fields, "source.versions[2].document.deployment")
	e = errorOf(t, deploy(map[string]any{"copy": map[string]any{"name": "bad"}, "version": 9}), http.StatusBadRequest)
	require.Contains(t, e.Error.Fields, "version")
}
