package notiontest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/connection/notiontest"
)

const token = "secret_test"

type request struct {
	method, path, body string
	header             map[string]string
}

// do sends r with the right headers unless r.header overrides them ("" to
// leave one out).
func do(t *testing.T, s *notiontest.Server, r request) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), r.method, s.URL+r.path, strings.NewReader(r.body))
	require.NoError(t, err)
	headers := map[string]string{"Authorization": "Bearer " + token, "Notion-Version": notiontest.Version}
	if r.body != "" {
		headers["Content-Type"] = "application/json"
	}
	for k, v := range r.header {
		headers[k] = v
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var reply map[string]any
	require.NoError(t, json.Unmarshal(raw, &reply), string(raw))
	return resp.StatusCode, reply
}

func TestRefusesWhatNotionRefuses(t *testing.T) {
	t.Parallel()
	s := notiontest.New(t, token)
	tooMany := make([]string, 101)
	for i := range tooMany {
		tooMany[i] = `{"type":"paragraph","paragraph":{"rich_text":[{"type":"text","text":{"content":"x"}}]}}`
	}
	for _, tc := range []struct {
		name       string
		r          request
		wantStatus int
		wantCode   string
	}{
		{"no token", request{method: "GET", path: "/v1/users/me", header: map[string]string{"Authorization": ""}}, 401, "unauthorized"},
		{"wrong token", request{method: "GET", path: "/v1/users/me", header: map[string]string{"Authorization": "Bearer secret_wrong"}}, 401, "unauthorized"},
		{"no Notion-Version", request{method: "GET", path: "/v1/users/me", header: map[string]string{"Notion-Version": ""}}, 400, "missing_version"},
		{"another Notion-Version", request{method: "GET", path: "/v1/users/me", header: map[string]string{"Notion-Version": "2021-05-13"}}, 400, "validation_error"},
		{"search as text", request{method: "POST", path: "/v1/search", body: `{}`, header: map[string]string{"Content-Type": "text/plain"}}, 400, "invalid_request"},
		{"search without content type", request{method: "POST", path: "/v1/search", body: `{}`, header: map[string]string{"Content-Type": ""}}, 400, "invalid_request"},
		{"broken JSON", request{method: "POST", path: "/v1/search", body: `{"query":`}, 400, "invalid_json"},
		{"bad filter", request{method: "POST", path: "/v1/search", body: `{"filter":{"property":"object","value":"comment"}}`}, 400, "validation_error"},
		{"page size", request{method: "POST", path: "/v1/search", body: `{"page_size":500}`}, 400, "validation_error"},
		{"unknown path", request{method: "GET", path: "/v1/teleport"}, 400, "invalid_request_url"},
		{"wrong method", request{method: "DELETE", path: "/v1/pages/" + notiontest.HandbookID}, 400, "invalid_request_url"},
		{"no such page", request{method: "GET", path: "/v1/pages/11111111-2222-4333-8444-555555555555"}, 404, "object_not_found"},
		{"not an ID", request{method: "GET", path: "/v1/pages/handbook"}, 400, "validation_error"},
		{"page without parent", request{method: "POST", path: "/v1/pages", body: `{"properties":{"title":{"title":[{"text":{"content":"x"}}]}}}`}, 400, "validation_error"},
		{"page without title", request{method: "POST", path: "/v1/pages", body: `{"parent":{"page_id":"` + notiontest.HandbookID + `"},"properties":{}}`}, 400, "validation_error"},
		{"append nothing", request{method: "PATCH", path: "/v1/blocks/" + notiontest.HandbookID + "/children", body: `{}`}, 400, "validation_error"},
		{"append 101 blocks", request{method: "PATCH", path: "/v1/blocks/" + notiontest.HandbookID + "/children", body: `{"children":[` + strings.Join(tooMany, ",") + `]}`}, 400, "validation_error"},
		{"text over 2000", request{method: "PATCH", path: "/v1/blocks/" + notiontest.HandbookID + "/children",
			body: fmt.Sprintf(`{"children":[{"type":"paragraph","paragraph":{"rich_text":[{"type":"text","text":{"content":%q}}]}}]}`, strings.Repeat("x", 2001))}, 400, "validation_error"},
	} {
		status, reply := do(t, s, tc.r)
		require.Equal(t, tc.wantStatus, status, tc.name)
		require.Equal(t, "error", reply["object"], tc.name)
		require.Equal(t, float64(tc.wantStatus), reply["status"], tc.name)
		require.Equal(t, tc.wantCode, reply["code"], tc.name)
		require.NotEmpty(t, reply["message"], tc.name)
	}
	require.Len(t, s.Blocks(notiontest.HandbookID), 5, "nothing was appended")
}

func TestKeepsState(t *testing.T) {
	t.Parallel()
	s := notiontest.New(t, token)
	status, page := do(t, s, request{method: "POST", path: "/v1/pages", body: `{
		"parent":{"page_id":"` + strings.ReplaceAll(notiontest.HandbookID, "-", "") + `"},
		"properties":{"title":{"title":[{"type":"text","text":{"content":"Minutes"}}]}},
		"children":[{"object":"block","type":"heading_2","heading_2":{"rich_text":[{"type":"text","text":{"content":"Agenda"}}]}}]}`})
	require.Equal(t, http.StatusOK, status, page)
	id := page["id"].(string)

	status, reply := do(t, s, request{method: "PATCH", path: "/v1/blocks/" + id + "/children",
		body: `{"children":[{"paragraph":{"rich_text":[{"text":{"content":"Ship it"}}]}}]}`})
	require.Equal(t, http.StatusOK, status, reply)
	require.Len(t, reply["results"], 1)

	blocks := s.Blocks(id)
	require.Len(t, blocks, 2)
	require.Equal(t, notiontest.Block{ID: blocks[0].ID, Type: "heading_2", Text: "Agenda"}, blocks[0])
	require.Equal(t, notiontest.Block{ID: blocks[1].ID, Type: "paragraph", Text: "Ship it"}, blocks[1])

	status, reply = do(t, s, request{method: "GET", path: "/v1/blocks/" + id + "/children?page_size=1"})
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, true, reply["has_more"])
	status, reply = do(t, s, request{method: "GET", path: "/v1/blocks/" + id + "/children?page_size=1&start_cursor=" + reply["next_cursor"].(string)})
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, false, reply["has_more"])
	require.Equal(t, "paragraph", reply["results"].([]any)[0].(map[string]any)["type"])

	status, reply = do(t, s, request{method: "POST", path: "/v1/search", body: `{"query":"minutes"}`})
	require.Equal(t, http.StatusOK, status)
	results := reply["results"].([]any)
	require.Len(t, results, 1)
	require.Equal(t, id, results[0].(map[string]any)["id"])

	status, reply = do(t, s, request{method: "GET", path: "/v1/pages/" + id})
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, notiontest.HandbookID, reply["parent"].(map[string]any)["page_id"])
}
