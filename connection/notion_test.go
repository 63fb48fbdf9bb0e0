package connection_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/connection/notiontest"
)

const notionToken = "secret_" + secret

func notionConnection(s *notiontest.Server, token string) connection.Connection {
	return connection.Connection{
		Name: "notion", Kind: connection.KindNotion,
		Config:      connection.Config{BaseURL: s.URL},
		Credentials: connection.Credentials{Token: token},
	}
}

func TestNotion(t *testing.T) {
	t.Parallel()
	s := notiontest.New(t, notionToken)
	client := open(t, notionConnection(s, notionToken))
	ctx := t.Context()

	tools, err := client.Tools(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"search", "get_page", "create_page", "append_blocks"}, toolNames(tools))
	me := s.Requests()[0]
	require.Equal(t, "GET /v1/users/me", me.Method+" "+me.Path)
	require.Equal(t, "Bearer "+notionToken, me.Header.Get("Authorization"))
	require.Equal(t, connection.NotionVersion, me.Header.Get("Notion-Version"))

	res, err := client.Call(ctx, "get_page", json.RawMessage(`{"page_id":"`+strings.ReplaceAll(notiontest.HandbookID, "-", "")+`"}`))
	require.NoError(t, err)
	require.Equal(t, connection.Result{Text: "Bud handbook\n" +
		"\n# Welcome" +
		"\nBud runs prompts on Temporal." +
		"\n- Ship small changes" +
		"\n[x] Read the style guide" +
		"\n```shell make test```"}, res)

	// A page's URL names it too.
	res, err = client.Call(ctx, "get_page", json.RawMessage(`{"page_id":"https://www.notion.so/Bud-handbook-`+strings.ReplaceAll(notiontest.HandbookID, "-", "")+`?pvs=4"}`))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(res.Text, "Bud handbook\n"), res.Text)

	res, err = client.Call(ctx, "create_page", json.RawMessage(`{"parent_page_id":"`+notiontest.HandbookID+`","title":"Release notes","content":"First paragraph.\n\nSecond paragraph,\nstill second."}`))
	require.NoError(t, err)
	require.False(t, res.IsError, res.Text)
	var created struct{ ID, URL, Title string }
	require.NoError(t, json.Unmarshal([]byte(res.Text), &created))
	require.Equal(t, "Release notes", created.Title)
	create := s.Requests()[len(s.Requests())-1]
	require.Equal(t, "POST /v1/pages", create.Method+" "+create.Path)
	require.Equal(t, "application/json", create.Header.Get("Content-Type"))

	res, err = client.Call(ctx, "append_blocks", json.RawMessage(`{"block_id":"`+created.ID+`","content":"Third paragraph."}`))
	require.NoError(t, err)
	require.False(t, res.IsError, res.Text)
	require.Contains(t, res.Text, `"appended":1`)
	appendReq := s.Requests()[len(s.Requests())-1]
	require.Equal(t, "PATCH /v1/blocks/"+created.ID+"/children", appendReq.Method+" "+appendReq.Path)

	res, err = client.Call(ctx, "get_page", json.RawMessage(`{"page_id":"`+created.ID+`"}`))
	require.NoError(t, err)
	require.Equal(t, "Release notes\n\nFirst paragraph.\nSecond paragraph,\nstill second.\nThird paragraph.", res.Text)

	// The new page is found by search, and shows in its parent.
	res, err = client.Call(ctx, "search", json.RawMessage(`{"query":"release","filter":"page"}`))
	require.NoError(t, err)
	require.JSONEq(t, fmt.Sprintf(`{"results":[{"object":"page","id":%q,"title":"Release notes","url":%q}]}`, created.ID, created.URL), res.Text)
	res, err = client.Call(ctx, "search", json.RawMessage(`{"filter":"database"}`))
	require.NoError(t, err)
	require.Contains(t, res.Text, `"title":"Tasks"`)
	require.NotContains(t, res.Text, "handbook")
	res, err = client.Call(ctx, "search", json.RawMessage(`{"page_size":1}`))
	require.NoError(t, err)
	require.Contains(t, res.Text, `"next_cursor"`)
	res, err = client.Call(ctx, "get_page", json.RawMessage(`{"page_id":"`+notiontest.HandbookID+`"}`))
	require.NoError(t, err)
	require.Contains(t, res.Text, "[child page "+created.ID+": Release notes]")

	// Notion's object_not_found and validation_error for the model.
	res, err = client.Call(ctx, "get_page", json.RawMessage(`{"page_id":"11111111-2222-4333-8444-555555555555"}`))
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, res.Text, "Notion: object_not_found: Could not find page with ID: 11111111-2222-4333-8444-555555555555")
	before := len(s.Requests())
	res, err = client.Call(ctx, "get_page", json.RawMessage(`{"page_id":"../users/me"}`))
	require.NoError(t, err)
	require.True(t, res.IsError)
	require.Contains(t, res.Text, "Notion: validation_error: page_id should be a Notion ID")
	require.Len(t, s.Requests(), before, "no request for a malformed ID")
	res, err = client.Call(ctx, "create_page", json.RawMessage(`{"parent_page_id":"11111111-2222-4333-8444-555555555555","title":"x"}`))
	require.NoError(t, err)
	require.True(t, res.IsError)

	before = len(s.Requests())
	_, err = client.Call(ctx, "search", json.RawMessage(`{"filter":"comment"}`))
	requireReason(t, err, connection.ReasonRejected)
	_, err = client.Call(ctx, "create_page", json.RawMessage(`{"title":"x"}`))
	requireReason(t, err, connection.ReasonRejected)
	_, err = client.Call(ctx, "archive_page", nil)
	requireReason(t, err, connection.ReasonRejected)
	require.Len(t, s.Requests(), before)
}

func TestNotionLongContent(t *testing.T) {
	t.Parallel()
	s := notiontest.New(t, notionToken)
	client := open(t, notionConnection(s, notionToken))
	ctx := t.Context()

	// 150 paragraphs, one of 4500 characters: over Notion's 100 blocks a
	// request and 2000 characters a rich text item.
	paragraphs := make([]string, 150)
	for i := range paragraphs {
		paragraphs[i] = fmt.Sprintf("Paragraph %d.", i)
	}
	long := strings.Repeat("é", 4500)
	paragraphs[7] = long
	args, _ := json.Marshal(map[string]string{"parent_page_id": notiontest.HandbookID, "title": "Long", "content": strings.Join(paragraphs, "\n\n")})
	res, err := client.Call(ctx, "create_page", args)
	require.NoError(t, err)
	require.False(t, res.IsError, res.Text)
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(res.Text), &created))
	require.Len(t, s.Blocks(created.ID), 150)

	// get_page follows the block pagination (100 a page).
	res, err = client.Call(ctx, "get_page", json.RawMessage(`{"page_id":"`+created.ID+`"}`))
	require.NoError(t, err)
	require.Equal(t, "Long\n\n"+strings.Join(paragraphs, "\n"), res.Text)
	var pages int
	for _, r := range s.Requests() {
		if r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/children") {
			pages++
		}
	}
	require.Equal(t, 2, pages)
}

func TestNotionWrongToken(t *testing.T) {
	t.Parallel()
	s := notiontest.New(t, "secret_right")
	client := open(t, notionConnection(s, notionToken))
	_, err := client.Tools(t.Context())
	e := requireReason(t, err, connection.ReasonUnauthorized)
	require.Equal(t, http.StatusUnauthorized, e.Status)
	require.Equal(t, "Notion refused the token (unauthorized): API token is invalid.", e.Message)

	_, err = client.Call(t.Context(), "search", nil)
	requireReason(t, err, connection.ReasonUnauthorized)
}

func TestNotionOutages(t *testing.T) {
	t.Parallel()
	for status, reason := range map[int]string{
		http.StatusTooManyRequests:     connection.ReasonUnavailable,
		http.StatusConflict:            connection.ReasonUnavailable,
		http.StatusBadGateway:          connection.ReasonUnavailable,
		http.StatusServiceUnavailable:  connection.ReasonUnavailable,
		http.StatusForbidden:           connection.ReasonUnauthorized,
		http.StatusBadRequest:          connection.ReasonRejected, // invalid_request_url: our request was wrong
		http.StatusInternalServerError: connection.ReasonUnavailable,
	} {
		srv := httpStub(t, status, `{"object":"error","status":`+fmt.Sprint(status)+`,"code":"some_code","message":"token was `+notionToken+`"}`)
		c := connection.Connection{Name: "n", Kind: connection.KindNotion, Config: connection.Config{BaseURL: srv}, Credentials: connection.Credentials{Token: notionToken}}
		client := open(t, c)
		_, err := client.Call(t.Context(), "search", nil)
		e := requireReason(t, err, reason)
		require.Equal(t, status, e.Status)
		require.Contains(t, e.Message, "token was [redacted]")
	}
}
