package app_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/app"
)

// opView is a change as a test compares it: values decoded.
type opView struct {
	Op, Path        string
	Value, OldValue any
}

func opViews(t *testing.T, changes []app.Change) []opView {
	t.Helper()
	out := make([]opView, len(changes))
	for i, c := range changes {
		out[i] = opView{Op: c.Op, Path: c.Path}
		if c.Value != nil {
			require.NoError(t, json.Unmarshal(*c.Value, &out[i].Value))
		}
		if c.OldValue != nil {
			require.NoError(t, json.Unmarshal(*c.OldValue, &out[i].OldValue))
		}
	}
	return out
}

// TestVersionDiff: a message inserted in the middle of the list is one add
// at its index, a changed field is a replace with its old value, and the
// way back is a remove with the old value.
func TestVersionDiff(t *testing.T) {
	t.Parallel()
	b, p := promptSetup(t)
	first := map[string]any{"role": "user", "content": "Greet {{ name }}."}
	middle := map[string]any{"role": "assistant", "content": "Hello! What language?"}
	last := map[string]any{"role": "user", "content": "In {{ language }}, please."}
	v1doc := promptDoc("llm", map[string]any{"messages": []any{first, last}})
	pr := decodeAs[promptOut](t, b.do(t, "POST", "/api/projects/"+p.ID.String()+"/prompts",
		map[string]any{"name": "greeter", "document": v1doc}), http.StatusCreated)
	v2doc := promptDoc("llm", map[string]any{"messages": []any{first, middle, last}, "system_prompt": "You greet people warmly."})
	decodeAs[versionOut](t, b.do(t, "POST", "/api/prompts/"+pr.ID.String()+"/versions", map[string]any{"document": v2doc}), http.StatusCreated)
	base := "/api/prompts/" + pr.ID.String() + "/versions/"

	d := decodeAs[app.VersionDiff](t, b.do(t, "GET", base+"1/diff/2", nil), http.StatusOK)
	require.Equal(t, pr.ID.String(), d.PromptID)
	require.EqualValues(t, 1, d.From)
	require.EqualValues(t, 2, d.To)
	require.ElementsMatch(t, []opView{
		{Op: "replace", Path: "/system_prompt", Value: "You greet people warmly.", OldValue: "You greet people."},
		{Op: "add", Path: "/messages/1", Value: middle},
	}, opViews(t, d.Changes))

	back := decodeAs[app.VersionDiff](t, b.do(t, "GET", base+"2/diff/1", nil), http.StatusOK)
	require.ElementsMatch(t, []opView{
		{Op: "replace", Path: "/system_prompt", Value: "You greet people.", OldValue: "You greet people warmly."},
		{Op: "remove", Path: "/messages/1", OldValue: middle},
	}, opViews(t, back.Changes))

	same := decodeAs[app.VersionDiff](t, b.do(t, "GET", base+"2/diff/2", nil), http.StatusOK)
	require.NotNil(t, same.Changes)
	require.Empty(t, same.Changes)

	// Absent versions and prompts are 404s naming what is absent.
	e := errorOf(t, b.do(t, "GET", base+"1/diff/3", nil), http.StatusNotFound)
	require.Equal(t, []string{"b"}, fieldNames(e.Error.Fields))
	e = errorOf(t, b.do(t, "GET", base+"0/diff/x", nil), http.StatusNotFound)
	require.Equal(t, []string{"a", "b"}, fieldNames(e.Error.Fields))
	e = errorOf(t, b.do(t, "GET", "/api/prompts/"+uuid.NewString()+"/versions/1/diff/2", nil), http.StatusNotFound)
	require.Equal(t, "not_found", e.Error.Code)
	require.Contains(t, e.Error.Message, "prompt")
}
