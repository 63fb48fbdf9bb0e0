package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/stretchr/testify/require"
)

// TestDevPromptRun runs a deployed prompt through `bud dev` end to end:
// BudApp saves and deploys it, the gateway starts a PromptRun workflow, the
// worker renders the messages and calls the stand-in (which echoes the last
// user message, so the reply is the rendered template), and the official
// OpenAI client reads OpenAI's Response object.
func TestDevPromptRun(t *testing.T) {
	env := newDevEnv(t)
	p := env.start(t)
	defer p.stop(t)
	token, err := os.ReadFile(filepath.Join(env.dataDir, "admin-token"))
	require.NoError(t, err)
	api := apiClient{t: t, base: "http://" + env.app, token: strings.TrimSpace(string(token))}

	var project struct{ ID string }
	api.do("POST", "/api/projects", map[string]any{"name": "runs"}, http.StatusCreated, &project)
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"name": "echo", "kind": "model", "upstream": map[string]any{"base_url": "http://" + env.standIn + "/v1", "model": "stand-in"},
	}, http.StatusCreated, nil)
	api.do("POST", "/api/projects/"+project.ID+"/deployments", map[string]any{
		"kind": "prompt",
		"prompt": map[string]any{"name": "greeter", "document": map[string]any{
			"deployment":    "echo",
			"system_prompt": "You greet people.",
			"messages":      []any{map[string]any{"role": "user", "content": "Greet {{ name }} {{ times }} times{% if loud %}, loudly{% endif %}."}},
			"input": map[string]any{"type": "structured", "variables": []any{
				map[string]any{"name": "name", "type": "string", "required": true, "validation": map[string]any{"basic": map[string]any{"min_length": 2}}},
				map[string]any{"name": "times", "type": "integer", "default": 1, "validation": map[string]any{"basic": map[string]any{"ge": 1, "le": 5}}},
				map[string]any{"name": "loud", "type": "boolean", "default": false},
			}},
		}},
	}, http.StatusCreated, nil)
	var key struct{ Secret string }
	api.do("POST", "/api/projects/"+project.ID+"/api-keys", map[string]any{"name": "k"}, http.StatusCreated, &key)

	c := openai.NewClient(option.WithBaseURL("http://"+env.gateway+"/v1/"), option.WithAPIKey(key.Secret), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.Responses.New(ctx, responses.ResponseNewParams{
		Prompt: responses.ResponsePromptParam{ID: "greeter", Variables: map[string]responses.ResponsePromptVariableUnionParam{
			"name":  {OfString: openai.String("Ada")},
			"times": {OfString: openai.String("3")}, // OpenAI's SDKs send strings; the gateway types them
			"loud":  {OfString: openai.String("true")},
		}},
	})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(resp.ID, "resp_"), resp.ID)
	require.Equal(t, responses.ResponseStatusCompleted, resp.Status)
	require.Equal(t, "Greet Ada 3 times, loudly.", resp.OutputText())
	require.Equal(t, "echo", resp.Model)
	require.Positive(t, resp.Usage.TotalTokens)

	// The same run, read back.
	again, err := c.Responses.Get(ctx, resp.ID, responses.ResponseGetParams{})
	require.NoError(t, err)
	require.Equal(t, resp.OutputText(), again.OutputText())

	// A variable that breaks its constraint: 400 naming it, no run.
	_, err = c.Responses.New(ctx, responses.ResponseNewParams{
		Prompt: responses.ResponsePromptParam{ID: "greeter", Variables: map[string]responses.ResponsePromptVariableUnionParam{
			"name": {OfString: openai.String("Ada")}, "times": {OfString: openai.String("9")},
		}},
	})
	var apiErr *openai.Error
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 400, apiErr.StatusCode)
	require.Equal(t, "prompt.variables.times", apiErr.Param)

	// A prompt that is not deployed in this project: 404.
	_, err = c.Responses.New(ctx, responses.ResponseNewParams{Prompt: responses.ResponsePromptParam{ID: "nope"}})
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 404, apiErr.StatusCode)
}
