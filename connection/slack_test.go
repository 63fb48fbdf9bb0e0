package connection_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/connection/slacktest"
)

const slackToken = "xoxb-" + secret

func slackConnection(s *slacktest.Server, token string) connection.Connection {
	return connection.Connection{
		Name: "slack", Kind: connection.KindSlack,
		Config:      connection.Config{BaseURL: s.URL},
		Credentials: connection.Credentials{Token: token},
	}
}

func TestSlack(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, slackToken)
	client := open(t, slackConnection(s, slackToken))
	ctx := t.Context()

	tools, err := client.Tools(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"post_message", "list_channels", "channel_history", "lookup_user_by_email"}, toolNames(tools))
	first := s.Requests()[0]
	require.Equal(t, "/auth.test", first.Path)
	require.Equal(t, "Bearer "+slackToken, first.Header.Get("Authorization"))

	res, err := client.Call(ctx, "post_message", json.RawMessage(`{"channel":"#general","text":"Deploy done"}`))
	require.NoError(t, err)
	require.False(t, res.IsError, res.Text)
	var posted struct{ Channel, TS string }
	require.NoError(t, json.Unmarshal([]byte(res.Text), &posted))
	require.Equal(t, slacktest.GeneralID, posted.Channel)
	require.NotEmpty(t, posted.TS)
	post := s.Requests()[len(s.Requests())-1]
	require.Equal(t, http.MethodPost, post.Method)
	require.Equal(t, "application/json; charset=utf-8", post.Header.Get("Content-Type"))

	res, err = client.Call(ctx, "post_message", json.RawMessage(`{"channel":"C0000000001","text":"In the thread","thread_ts":"`+posted.TS+`"}`))
	require.NoError(t, err)
	require.False(t, res.IsError, res.Text)

	res, err = client.Call(ctx, "channel_history", json.RawMessage(`{"channel":"C0000000001","limit":2}`))
	require.NoError(t, err)
	require.False(t, res.IsError, res.Text)
	var history struct {
		Messages []struct {
			User, Text, TS, ThreadTS string
		}
		HasMore    bool   `json:"has_more"`
		NextCursor string `json:"next_cursor"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.Text), &history))
	require.Len(t, history.Messages, 2)
	require.Equal(t, "In the thread", history.Messages[0].Text)
	require.Equal(t, "Deploy done", history.Messages[1].Text)
	require.Equal(t, slacktest.BotID, history.Messages[1].User)
	require.True(t, history.HasMore)
	get := s.Requests()[len(s.Requests())-1]
	require.Equal(t, http.MethodGet, get.Method)
	require.Equal(t, "C0000000001", get.Query.Get("channel"))
	require.Equal(t, "2", get.Query.Get("limit"))

	res, err = client.Call(ctx, "channel_history", json.RawMessage(`{"channel":"C0000000001","cursor":"`+history.NextCursor+`"}`))
	require.NoError(t, err)
	require.Contains(t, res.Text, "Welcome to #general")

	res, err = client.Call(ctx, "list_channels", nil)
	require.NoError(t, err)
	require.JSONEq(t, `{"channels":[
		{"id":"C0000000001","name":"general","is_private":false,"is_member":true,"num_members":2,"topic":"Company-wide announcements"},
		{"id":"C0000000002","name":"random","is_private":false,"is_member":true,"num_members":2,"topic":"Anything goes"}
	]}`, res.Text)
	res, err = client.Call(ctx, "list_channels", json.RawMessage(`{"types":"private_channel","limit":10}`))
	require.NoError(t, err)
	require.Contains(t, res.Text, `"name":"secret"`)

	res, err = client.Call(ctx, "lookup_user_by_email", json.RawMessage(`{"email":"ada@example.com"}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"U0000000001","name":"ada","real_name":"Ada Lovelace","display_name":"ada","email":"ada@example.com","tz":"Europe/London"}`, res.Text)

	// Slack's ok:false for the model to read.
	res, err = client.Call(ctx, "post_message", json.RawMessage(`{"channel":"#nowhere","text":"hi"}`))
	require.NoError(t, err)
	require.Equal(t, connection.Result{Text: "Slack: channel_not_found", IsError: true}, res)
	res, err = client.Call(ctx, "lookup_user_by_email", json.RawMessage(`{"email":"nobody@example.com"}`))
	require.NoError(t, err)
	require.Equal(t, connection.Result{Text: "Slack: users_not_found", IsError: true}, res)

	// Arguments that break the schema never reach Slack.
	before := len(s.Requests())
	for _, args := range []string{`{"channel":"C0000000001"}`, `{"channel":"C0000000001","text":"x","colour":"red"}`, `{"channel":7,"text":"x"}`, `"hi"`} {
		_, err = client.Call(ctx, "post_message", json.RawMessage(args))
		requireReason(t, err, connection.ReasonRejected)
	}
	_, err = client.Call(ctx, "delete_everything", nil)
	requireReason(t, err, connection.ReasonRejected)
	require.Len(t, s.Requests(), before)
}

func TestSlackWrongToken(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, "xoxb-right")
	client := open(t, slackConnection(s, slackToken))
	_, err := client.Tools(t.Context())
	e := requireReason(t, err, connection.ReasonUnauthorized)
	require.Equal(t, "Slack refused the token (invalid_auth)", e.Message)
	require.False(t, e.Retryable())

	_, err = client.Call(t.Context(), "list_channels", nil)
	requireReason(t, err, connection.ReasonUnauthorized)
}

func TestSlackRateLimited(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, slackToken)
	client := open(t, slackConnection(s, slackToken))
	s.RateLimitNext(30)
	_, err := client.Call(t.Context(), "list_channels", nil)
	e := requireReason(t, err, connection.ReasonUnavailable)
	require.Equal(t, http.StatusTooManyRequests, e.Status)
	require.Contains(t, e.Message, "retry after 30 s")
	require.True(t, e.Retryable())
}

func TestSlackUnreachable(t *testing.T) {
	t.Parallel()
	c := connection.Connection{Name: "slack", Kind: connection.KindSlack,
		Config: connection.Config{BaseURL: "http://127.0.0.1:1/api"}, Credentials: connection.Credentials{Token: slackToken}}
	client := open(t, c)
	_, err := client.Tools(t.Context())
	e := requireReason(t, err, connection.ReasonUnreachable)
	require.Equal(t, "Slack at http://127.0.0.1:1/api could not be reached: connection refused", e.Message)
}

func TestSlackWrongBaseURL(t *testing.T) {
	t.Parallel()
	s := slacktest.New(t, slackToken)
	c := slackConnection(s, slackToken)
	c.Config.BaseURL = s.URL + "/v2"
	client := open(t, c)
	_, err := client.Tools(t.Context())
	e := requireReason(t, err, connection.ReasonRejected)
	require.Equal(t, http.StatusNotFound, e.Status)
}
