package activities_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/run"
)

func TestCanonicalArguments(t *testing.T) {
	t.Parallel()
	require.Equal(t, `{"a":1,"b":[true,"x<y"]}`, activities.CanonicalArguments(` { "b": [true, "x<y"], "a": 1 } `))
	require.Equal(t, `{"n":12345678901234567890}`, activities.CanonicalArguments(`{"n": 12345678901234567890}`), "numbers as written")
	require.Equal(t, "{}", activities.CanonicalArguments(" "))
	require.Equal(t, "not json", activities.CanonicalArguments(" not json "))
	require.Equal(t, activities.CallKey("c", "echo", `{"message":"hi"}`), activities.CallKey("c", "echo", `{ "message" : "hi" }`))
	require.NotEqual(t, activities.CallKey("c", "echo", `{"message":"hi"}`), activities.CallKey("c", "echo", `{"message":"ho"}`))
}

// A replay's tools come from the replayed run's record: its listings stand
// in for the connections (which are not reached), and each call gets the
// recorded result of the same call, the n-th the n-th; anything else fails
// without a retry.
func TestRecordedTools(t *testing.T) {
	t.Parallel()
	b := setup(t)
	conn := uuid.New()
	no := false
	calls := []run.ToolCall{
		{ID: "c1", Name: "echo", ConnectionID: conn.String(), Arguments: `{"message":"hi"}`, Output: "Echo: hi (1)"},
		{ID: "c2", Name: "echo", ConnectionID: conn.String(), Arguments: `{"message":"hi"}`, Output: "Echo: hi (2)"},
		{ID: "c3", Name: "post", ConnectionID: conn.String(), Arguments: `{}`, Approved: &no, Error: "The user rejected this tool call."},
		{ID: "c4", Name: "fail", ConnectionID: conn.String(), Arguments: `{}`, Error: "boom"},
	}
	rawCalls, err := json.Marshal(calls)
	require.NoError(t, err)
	listings, err := json.Marshal([]activities.ToolListing{{ConnectionID: conn, ServerLabel: "everything", Tools: []connection.Tool{
		{Name: "echo", InputSchema: json.RawMessage(`{"type":"object"}`)}, {Name: "post", InputSchema: json.RawMessage(`{"type":"object"}`)},
	}}})
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, b.acts.RecordRun(t.Context(), activities.RunRecord{
		ID: "resp_original", ProjectID: b.project, Source: run.SourcePlayground, Status: run.StatusCompleted,
		ToolCalls: rawCalls, ToolListings: listings, CreatedAt: now, FinishedAt: now,
	}))

	// Listed from the record: these Activities have no tool executor to
	// reach a connection with.
	require.Nil(t, b.acts.Tools)
	var res activities.ResolveToolsResult
	env := newActivityEnv(b.acts)
	v, err := env.ExecuteActivity(b.acts.ResolveTools, activities.ResolveToolsInput{ProjectID: b.project, RecordedFrom: "resp_original",
		Tools: []prompt.Tool{{Type: prompt.ToolConnection, ConnectionID: conn.String(), Active: true, AllowedTools: []string{"echo"}}}})
	require.NoError(t, err)
	require.NoError(t, v.Get(&res))
	require.Len(t, res.Tools, 1)
	require.Equal(t, "echo", res.Tools[0].Function.Name)
	require.Equal(t, "everything", res.Routes[0].ServerLabel)
	_, err = env.ExecuteActivity(b.acts.ResolveTools, activities.ResolveToolsInput{ProjectID: b.project, RecordedFrom: "resp_original",
		Tools: []prompt.Tool{{Type: prompt.ToolConnection, ConnectionID: uuid.NewString(), Active: true}}})
	appErr, _ := appError(t, err)
	require.Equal(t, run.ToolNotRecorded, appErr.Type())
	require.True(t, appErr.NonRetryable())

	call := func(tool, args string, n int) (activities.CallToolResult, error) {
		v, err := env.ExecuteActivity(b.acts.RecordedToolCall, activities.RecordedToolCallInput{
			ProjectID: b.project, ReplayOf: "resp_original", ConnectionID: conn, Tool: tool, Arguments: args, Occurrence: n,
		})
		var out activities.CallToolResult
		if err == nil {
			require.NoError(t, v.Get(&out))
		}
		return out, err
	}
	out, err := call("echo", `{ "message": "hi" }`, 1)
	require.NoError(t, err)
	require.Equal(t, "Echo: hi (1)", out.Output)
	out, err = call("echo", `{"message":"hi"}`, 2)
	require.NoError(t, err)
	require.Equal(t, "Echo: hi (2)", out.Output)
	out, err = call("fail", `{}`, 1)
	require.NoError(t, err)
	require.Equal(t, activities.CallToolResult{Output: "boom", IsError: true, LatencyMS: out.LatencyMS, Attempt: 1}, out)

	for _, c := range []struct {
		tool, args string
		n          int
		msg        string
	}{
		{"echo", `{"message":"hi"}`, 3, `replay with recorded tools: the original run made only 2 call(s) of "echo" with these arguments, so this one was not made`},
		{"echo", `{"message":"other"}`, 1, `replay with recorded tools: the original run made no call of "echo" with these arguments, so this call was not made`},
		{"post", `{}`, 1, `replay with recorded tools: the original run made no call of "post" with these arguments, so this call was not made`},
	} {
		_, err := call(c.tool, c.args, c.n)
		appErr, f := appError(t, err)
		require.Equal(t, run.ToolNotRecorded, appErr.Type())
		require.True(t, appErr.NonRetryable())
		require.Equal(t, c.msg, f.Message)
	}

	// A run of another project is no record of this one's.
	_, err = env.ExecuteActivity(b.acts.RecordedToolCall, activities.RecordedToolCallInput{
		ProjectID: uuid.New(), ReplayOf: "resp_original", ConnectionID: conn, Tool: "echo", Arguments: `{"message":"hi"}`, Occurrence: 1,
	})
	appErr, _ = appError(t, err)
	require.Equal(t, run.ToolNotRecorded, appErr.Type())
	_, err = env.ExecuteActivity(b.acts.ResolveTools, activities.ResolveToolsInput{ProjectID: uuid.New(), RecordedFrom: "resp_original",
		Tools: []prompt.Tool{{Type: prompt.ToolConnection, ConnectionID: conn.String(), Active: true}}})
	appErr, _ = appError(t, err)
	require.Equal(t, run.ToolNotRecorded, appErr.Type())
}

// BenchmarkRecordedTools is what a replay with recorded tools reads of the
// replayed run: one ResolveTools, then one RecordedToolCall per call, here
// of a run that listed two connections of 15 tools each and made 8 calls.
func BenchmarkRecordedTools(b *testing.B) {
	pool, _ := dbtest.NewSchema(b)
	ctx := b.Context()
	project, err := dbsqlc.New(pool).CreateProject(ctx, dbsqlc.CreateProjectParams{Name: "p-" + uuid.NewString()[:8]})
	require.NoError(b, err)
	acts := activities.New(activities.Config{Identity: "bench", Pool: pool})
	schema := json.RawMessage(`{"type":"object","properties":{"message":{"type":"string","description":"` + strings.Repeat("x", 300) + `"}},"required":["message"]}`)
	var listings []activities.ToolListing
	var tools []prompt.Tool
	for range 2 {
		l := activities.ToolListing{ConnectionID: uuid.New(), ServerLabel: "everything"}
		for i := range 15 {
			l.Tools = append(l.Tools, connection.Tool{Name: fmt.Sprintf("tool%d", i), InputSchema: schema})
		}
		listings = append(listings, l)
		tools = append(tools, prompt.Tool{Type: prompt.ToolConnection, ConnectionID: l.ConnectionID.String(), Active: true})
	}
	conn := listings[0].ConnectionID
	var calls []run.ToolCall
	for i := range 8 {
		calls = append(calls, run.ToolCall{ID: fmt.Sprintf("c%d", i), Name: "tool0", ConnectionID: conn.String(),
			Arguments: fmt.Sprintf(`{"message":"m%d"}`, i), Output: strings.Repeat("y", 1000)})
	}
	rawCalls, err := json.Marshal(calls)
	require.NoError(b, err)
	rawListings, err := json.Marshal(listings)
	require.NoError(b, err)
	now := time.Now()
	require.NoError(b, acts.RecordRun(ctx, activities.RunRecord{
		ID: "resp_bench", ProjectID: project.ID, Source: run.SourcePlayground, Status: run.StatusCompleted,
		ToolCalls: rawCalls, ToolListings: rawListings, CreatedAt: now, FinishedAt: now,
	}))
	env := newActivityEnv(acts)
	for b.Loop() {
		_, err := env.ExecuteActivity(acts.ResolveTools, activities.ResolveToolsInput{ProjectID: project.ID, RecordedFrom: "resp_bench", Tools: tools})
		require.NoError(b, err)
		for _, c := range calls {
			_, err := env.ExecuteActivity(acts.RecordedToolCall, activities.RecordedToolCallInput{
				ProjectID: project.ID, ReplayOf: "resp_bench", ConnectionID: conn, Tool: c.Name, Arguments: c.Arguments, Occurrence: 1,
			})
			require.NoError(b, err)
		}
	}
}
