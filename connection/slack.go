package connection

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
)

// DefaultSlackBaseURL is Slack's Web API; Config.BaseURL replaces it.
const DefaultSlackBaseURL = "https://slack.com/api"

// slackReplyLimit bounds a Slack reply read into memory.
const slackReplyLimit = 8 << 20

// Slack's tools. Schemas are strict (no other properties) so a model's
// typo is a rejection that names it, not an argument Slack ignores.
var slackTools, slackSchemas = builtinTools(
	Tool{
		Name:        "post_message",
		Description: "Post a message to a Slack channel, or reply in a thread. Returns the channel ID and the message's ts.",
		InputSchema: json.RawMessage(`{
			"type": "object",
			"properties": {
				"channel": {"type": "string", "minLength": 1, "description": "Channel ID (C0123456789) or name (#general)"},
				"text": {"type": "string", "minLength": 1, "description": "Message text (Slack mrkdwn)"},
				"thread_ts": {"type": "string", "description": "ts of the parent message, to reply in its thread"}
			},
			"required": ["channel", "text"],
			"additionalProperties": false
		}`),
	},
	Tool{
		Name:        "list_channels",
		Description: "List the workspace's Slack channels (ID, name, privacy). Pass next_cursor back as cursor for the next page.",
		InputSchema: json.RawMessage(`{
			"type": "object",
			"properties": {
				"limit": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "Channels per page (default 100)"},
				"cursor": {"type": "string", "description": "next_cursor of the previous page"},
				"types": {"type": "string", "description": "Comma-separated: public_channel, private_channel, mpim, im (default public_channel)"}
			},
			"additionalProperties": false
		}`),
	},
	Tool{
		Name:        "channel_history",
		Description: "Read a Slack channel's messages, newest first: user, text, ts. Pass next_cursor back as cursor for older ones.",
		InputSchema: json.RawMessage(`{
			"type": "object",
			"properties": {
				"channel": {"type": "string", "minLength": 1, "description": "Channel ID (C0123456789)"},
				"limit": {"type": "integer", "minimum": 1, "maximum": 999, "description": "Messages per page (default 100)"},
				"oldest": {"type": "string", "description": "Only messages after this Unix timestamp (a ts)"},
				"latest": {"type": "string", "description": "Only messages before this Unix timestamp (a ts)"},
				"cursor": {"type": "string", "description": "next_cursor of the previous page"}
			},
			"required": ["channel"],
			"additionalProperties": false
		}`),
	},
	Tool{
		Name:        "lookup_user_by_email",
		Description: "Find a Slack user by email address: ID, name, real name.",
		InputSchema: json.RawMessage(`{
			"type": "object",
			"properties": {
				"email": {"type": "string", "minLength": 3, "description": "Email address"}
			},
			"required": ["email"],
			"additionalProperties": false
		}`),
	},
)

// slackAuthErrors are Slack's ok:false errors that mean the token is no
// good: the call is refused, not retried, and the model is not asked.
var slackAuthErrors = map[string]bool{
	"invalid_auth":           true,
	"not_authed":             true,
	"account_inactive":       true,
	"token_revoked":          true,
	"token_expired":          true,
	"not_allowed_token_type": true,
}

// slackServerErrors are Slack's ok:false errors that a later try may not get.
var slackServerErrors = map[string]bool{
	"ratelimited":         true,
	"fatal_error":         true,
	"internal_error":      true,
	"service_unavailable": true,
	"request_timeout":     true,
}

// slackClient calls Slack's Web API with a bot token. Safe for concurrent
// use.
type slackClient struct {
	api  apiCaller
	base string
}

func newSlack(c Connection, o Options, red redactor) *slackClient {
	base := c.Config.BaseURL
	if base == "" {
		base = DefaultSlackBaseURL
	}
	client, t := newHTTPClient(o.HTTPClient, base, http.Header{"Authorization": {"Bearer " + c.Credentials.Token}})
	return &slackClient{
		api:  apiCaller{client: client, t: t, red: red, where: "Slack at " + base},
		base: base,
	}
}

// Tools checks the token with auth.test, then returns Slack's tools.
func (s *slackClient) Tools(ctx context.Context) ([]Tool, error) {
	_, slackErr, err := s.method(ctx, "auth.test", nil, nil)
	if err != nil {
		return nil, err
	}
	if slackErr != "" {
		return nil, s.api.red.errorf(ReasonRejected, 0, "Slack refused auth.test (%s)", slackErr)
	}
	return append([]Tool(nil), slackTools...), nil
}

// Call calls one of Slack's tools. Slack's ok:false answers other than a
// bad token or an outage are a Result with IsError, e.g. "Slack:
// channel_not_found", for the model to read.
func (s *slackClient) Call(ctx context.Context, name string, arguments json.RawMessage) (Result, error) {
	schema, ok := slackSchemas[name]
	if !ok {
		return Result{}, unknownTool(s.api.red, KindSlack, name)
	}
	args, e := checkArguments(s.api.red, name, schema, arguments)
	if e != nil {
		return Result{}, e
	}
	var a struct {
		Channel  string `json:"channel"`
		Text     string `json:"text"`
		ThreadTS string `json:"thread_ts"`
		Limit    int    `json:"limit"`
		Cursor   string `json:"cursor"`
		Types    string `json:"types"`
		Oldest   string `json:"oldest"`
		Latest   string `json:"latest"`
		Email    string `json:"email"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return Result{}, s.api.red.errorf(ReasonRejected, 0, "the arguments of tool %s do not match its schema: %v", name, err)
	}
	var (
		method string
		query  url.Values
		body   any
		shape  func(json.RawMessage) (any, error)
	)
	switch name {
	case "post_message":
		method = "chat.postMessage"
		body = struct {
			Channel  string `json:"channel"`
			Text     string `json:"text"`
			ThreadTS string `json:"thread_ts,omitempty"`
		}{a.Channel, a.Text, a.ThreadTS}
		shape = shapeSlackPost
	case "list_channels":
		method = "conversations.list"
		query = url.Values{}
		setQuery(query, "limit", a.Limit)
		setQuery(query, "cursor", a.Cursor)
		setQuery(query, "types", a.Types)
		shape = shapeSlackChannels
	case "channel_history":
		method = "conversations.history"
		query = url.Values{"channel": {a.Channel}}
		setQuery(query, "limit", a.Limit)
		setQuery(query, "oldest", a.Oldest)
		setQuery(query, "latest", a.Latest)
		setQuery(query, "cursor", a.Cursor)
		shape = shapeSlackHistory
	case "lookup_user_by_email":
		method = "users.lookupByEmail"
		query = url.Values{"email": {a.Email}}
		shape = shapeSlackUser
	}
	raw, slackErr, err := s.method(ctx, method, query, body)
	if err != nil {
		return Result{}, err
	}
	if slackErr != "" {
		return s.api.red.result("Slack: "+slackErr, true), nil
	}
	v, err := shape(raw)
	if err != nil {
		return Result{}, s.api.red.errorf(ReasonUnavailable, 0, "Slack's answer to %s is not what it documents: %v", method, err)
	}
	text, _ := json.Marshal(v)
	return s.api.red.result(string(text), false), nil
}

// Close releases idle connections.
func (s *slackClient) Close() error {
	s.api.t.closeIdle()
	return nil
}

// method calls a Web API method as Slack documents it: with a body, POST
// with Content-Type application/json; charset=utf-8; without, GET with
// the arguments as query parameters (auth.test, a write without
// arguments, is a POST with an empty form). It returns the reply, or
// Slack's error code when ok is false and the error is the call's own.
func (s *slackClient) method(ctx context.Context, method string, query url.Values, body any) (json.RawMessage, string, error) {
	red := s.api.red
	u := joinURL(s.base, method)
	var req *http.Request
	var err error
	switch {
	case body != nil:
		req, err = s.api.newRequest(ctx, http.MethodPost, u, nil, body, "application/json; charset=utf-8")
	case method == "auth.test":
		req, err = s.api.newRequest(ctx, http.MethodPost, u, nil, nil, "application/x-www-form-urlencoded")
	default:
		req, err = s.api.newRequest(ctx, http.MethodGet, u, query, nil, "")
	}
	if err != nil {
		return nil, "", err
	}
	r, err := s.api.send(req, slackReplyLimit)
	if err != nil {
		return nil, "", err
	}
	var env struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	decodeErr := json.Unmarshal(r.body, &env)
	switch {
	case r.status == http.StatusTooManyRequests || env.Error == "ratelimited":
		return nil, "", red.errorf(ReasonUnavailable, r.status, "Slack is rate limiting %s%s", method, retryAfterText(r.header))
	case r.status >= 500:
		return nil, "", red.errorf(ReasonUnavailable, r.status, "Slack is unavailable: HTTP %d on %s", r.status, method)
	case r.status == http.StatusUnauthorized || r.status == http.StatusForbidden || slackAuthErrors[env.Error]:
		code := env.Error
		if code == "" {
			code = "HTTP " + strconv.Itoa(r.status)
		}
		return nil, "", red.errorf(ReasonUnauthorized, r.status, "Slack refused the token (%s)", code)
	case slackServerErrors[env.Error]:
		return nil, "", red.errorf(ReasonUnavailable, r.status, "Slack failed %s (%s)", method, env.Error)
	case r.status == http.StatusNotFound && env.Error == "unknown_method":
		return nil, "", red.errorf(ReasonRejected, r.status, "Slack at %s does not know the method %s: is the base URL right?", s.base, method)
	case r.status != http.StatusOK:
		return nil, "", red.errorf(ReasonRejected, r.status, "Slack answered HTTP %d on %s", r.status, method)
	case decodeErr != nil || r.truncated:
		return nil, "", red.errorf(ReasonUnavailable, r.status, "Slack's answer to %s is not a JSON object", method)
	case !env.OK:
		if env.Error == "" {
			env.Error = "unknown_error"
		}
		return nil, env.Error, nil
	}
	return r.body, "", nil
}

// setQuery sets key to v unless v is its zero value.
func setQuery[T string | int](q url.Values, key string, v T) {
	var zero T
	if v == zero {
		return
	}
	switch v := any(v).(type) {
	case string:
		q.Set(key, v)
	case int:
		q.Set(key, strconv.Itoa(v))
	}
}

// slackMeta holds the next page's cursor of a Slack reply, if any.
type slackMeta struct {
	NextCursor string `json:"next_cursor"`
}

func shapeSlackPost(raw json.RawMessage) (any, error) {
	var r struct {
		Channel string `json:"channel"`
		TS      string `json:"ts"`
	}
	err := json.Unmarshal(raw, &r)
	return r, err
}

func shapeSlackChannels(raw json.RawMessage) (any, error) {
	var r struct {
		Channels []struct {
			ID         string `json:"id"`
			Name       string `json:"name"`
			IsPrivate  bool   `json:"is_private"`
			IsArchived bool   `json:"is_archived,omitempty"`
			IsMember   bool   `json:"is_member,omitempty"`
			NumMembers int    `json:"num_members,omitempty"`
			Topic      *struct {
				Value string `json:"value"`
			} `json:"topic,omitempty"`
		} `json:"channels"`
		Meta slackMeta `json:"response_metadata"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	type channel struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		IsPrivate  bool   `json:"is_private"`
		IsArchived bool   `json:"is_archived,omitempty"`
		IsMember   bool   `json:"is_member,omitempty"`
		NumMembers int    `json:"num_members,omitempty"`
		Topic      string `json:"topic,omitempty"`
	}
	out := struct {
		Channels   []channel `json:"channels"`
		NextCursor string    `json:"next_cursor,omitempty"`
	}{Channels: []channel{}, NextCursor: r.Meta.NextCursor}
	for _, c := range r.Channels {
		ch := channel{ID: c.ID, Name: c.Name, IsPrivate: c.IsPrivate, IsArchived: c.IsArchived, IsMember: c.IsMember, NumMembers: c.NumMembers}
		if c.Topic != nil {
			ch.Topic = c.Topic.Value
		}
		out.Channels = append(out.Channels, ch)
	}
	return out, nil
}

func shapeSlackHistory(raw json.RawMessage) (any, error) {
	type message struct {
		User       string `json:"user,omitempty"`
		BotID      string `json:"bot_id,omitempty"`
		Text       string `json:"text"`
		TS         string `json:"ts"`
		ThreadTS   string `json:"thread_ts,omitempty"`
		ReplyCount int    `json:"reply_count,omitempty"`
	}
	var r struct {
		Messages []message `json:"messages"`
		HasMore  bool      `json:"has_more"`
		Meta     slackMeta `json:"response_metadata"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	if r.Messages == nil {
		r.Messages = []message{}
	}
	return struct {
		Messages   []message `json:"messages"`
		HasMore    bool      `json:"has_more,omitempty"`
		NextCursor string    `json:"next_cursor,omitempty"`
	}{r.Messages, r.HasMore, r.Meta.NextCursor}, nil
}

func shapeSlackUser(raw json.RawMessage) (any, error) {
	var r struct {
		User struct {
			ID       string `json:"id"`
			Name     string `json:"name"`
			RealName string `json:"real_name"`
			TZ       string `json:"tz"`
			IsBot    bool   `json:"is_bot"`
			Deleted  bool   `json:"deleted"`
			Profile  struct {
				DisplayName string `json:"display_name"`
				RealName    string `json:"real_name"`
				Email       string `json:"email"`
			} `json:"profile"`
		} `json:"user"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	u := r.User
	realName := u.RealName
	if realName == "" {
		realName = u.Profile.RealName
	}
	return struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		RealName    string `json:"real_name,omitempty"`
		DisplayName string `json:"display_name,omitempty"`
		Email       string `json:"email,omitempty"`
		TZ          string `json:"tz,omitempty"`
		IsBot       bool   `json:"is_bot,omitempty"`
		Deleted     bool   `json:"deleted,omitempty"`
	}{u.ID, u.Name, realName, u.Profile.DisplayName, u.Profile.Email, u.TZ, u.IsBot, u.Deleted}, nil
}
