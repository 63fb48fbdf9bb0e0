package slacktest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/connection/slacktest"
)

const token = "xoxb-test"

// call sends a request and returns the status and decoded reply.
func call(t *testing.T, method, url, contentType, auth, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
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

func TestRefusesWhatSlackRefuses(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, token)
	bearer := "Bearer " + token
	post := `{"channel":"C0000000001","text":"hi"}`
	for _, tc := range []struct {
		name                         string
		method, path, ct, auth, body string
		wantStatus                   int
		wantError                    string
	}{
		{"no token", "POST", "/auth.test", "", "", "", 200, "not_authed"},
		{"wrong token", "POST", "/auth.test", "", "Bearer xoxb-wrong", "", 200, "invalid_auth"},
		{"unknown method", "GET", "/chat.teleport", "", bearer, "", 404, "unknown_method"},
		{"post as text", "POST", "/chat.postMessage", "text/plain", bearer, post, 200, "invalid_post_type"},
		{"post without content type", "POST", "/chat.postMessage", "", bearer, post, 200, "invalid_post_type"},
		{"post by GET", "GET", "/chat.postMessage?channel=C0000000001&text=hi", "", bearer, "", 200, "invalid_request"},
		{"broken JSON", "POST", "/chat.postMessage", "application/json; charset=utf-8", bearer, `{"channel":`, 200, "invalid_json"},
		{"JSON not an object", "POST", "/chat.postMessage", "application/json; charset=utf-8", bearer, `["hi"]`, 200, "json_not_object"},
		{"no text", "POST", "/chat.postMessage", "application/json; charset=utf-8", bearer, `{"channel":"C0000000001"}`, 200, "no_text"},
		{"no such channel", "POST", "/chat.postMessage", "application/json; charset=utf-8", bearer, `{"channel":"C0000000099","text":"hi"}`, 200, "channel_not_found"},
		{"history without channel", "GET", "/conversations.history", "", bearer, "", 200, "channel_not_found"},
		{"history as JSON", "POST", "/conversations.history", "application/json", bearer, `{"channel":"C0000000001"}`, 200, "invalid_arguments"},
		{"no such user", "GET", "/users.lookupByEmail?email=nobody@example.com", "", bearer, "", 200, "users_not_found"},
		{"bad cursor", "GET", "/conversations.list?cursor=zzz", "", bearer, "", 200, "invalid_cursor"},
	} {
		status, reply := call(t, tc.method, s.URL+tc.path, tc.ct, tc.auth, tc.body)
		require.Equal(t, tc.wantStatus, status, tc.name)
		require.Equal(t, false, reply["ok"], tc.name)
		require.Equal(t, tc.wantError, reply["error"], tc.name)
	}
	require.Len(t, s.History(slacktest.GeneralID), 1, "nothing was posted")
}

func TestKeepsState(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, token)
	bearer := "Bearer " + token

	// JSON without a charset works, with Slack's warning.
	_, reply := call(t, "POST", s.URL+"/chat.postMessage", "application/json", bearer, `{"channel":"#random","text":"first"}`)
	require.Equal(t, true, reply["ok"])
	require.Equal(t, "missing_charset", reply["warning"])
	// A form POST works too.
	_, reply = call(t, "POST", s.URL+"/chat.postMessage", "application/x-www-form-urlencoded", bearer, "channel=C0000000002&text=second")
	require.Equal(t, true, reply["ok"], reply)

	_, reply = call(t, "GET", s.URL+"/conversations.history?channel=C0000000002", "", bearer, "")
	require.Equal(t, true, reply["ok"], reply)
	msgs := reply["messages"].([]any)
	require.Len(t, msgs, 2)
	require.Equal(t, "second", msgs[0].(map[string]any)["text"])
	require.Equal(t, "first", msgs[1].(map[string]any)["text"])

	got := s.Requests()
	require.Len(t, got, 3)
	require.Equal(t, "/chat.postMessage", got[0].Path)
	require.Equal(t, "C0000000002", got[2].Query.Get("channel"))
}

func TestRateLimitNext(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, token)
	s.RateLimitNext(3)
	status, reply := call(t, "POST", s.URL+"/auth.test", "", "Bearer "+token, "")
	require.Equal(t, http.StatusTooManyRequests, status)
	require.Equal(t, "ratelimited", reply["error"])
	status, reply = call(t, "POST", s.URL+"/auth.test", "", "Bearer "+token, "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, true, reply["ok"])
}
