// Package slacktest is a stand-in for Slack's Web API, for tests: point a
// slack connection's Config.BaseURL at Server.URL. It checks each request
// as Slack documents it (method, Authorization: Bearer, content type,
// required arguments) and answers as Slack does, ok:false with Slack's
// error codes included. It keeps state: a posted message shows up in its
// channel's history.
//
// Seeded: channels general (C0000000001), random (C0000000002) and the
// private channel secret (C0000000003); the user ada (U0000000001,
// ada@example.com); the bot the token belongs to (U0000000BOT).
package slacktest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Seeded IDs.
const (
	GeneralID = "C0000000001"
	RandomID  = "C0000000002"
	SecretID  = "C0000000003"
	AdaID     = "U0000000001"
	AdaEmail  = "ada@example.com"
	BotID     = "U0000000BOT"
	TeamID    = "T0000000001"
)

// Request is one request the stand-in received.
type Request struct {
	Method string
	// Path is the URL path below the base URL, e.g. "/chat.postMessage".
	Path   string
	Header http.Header
	Query  url.Values
	Body   []byte
}

// Message is a message in a channel.
type Message struct {
	Type     string `json:"type"`
	User     string `json:"user"`
	Text     string `json:"text"`
	TS       string `json:"ts"`
	ThreadTS string `json:"thread_ts,omitempty"`
	BotID    string `json:"bot_id,omitempty"`
}

type channel struct {
	ID         string
	Name       string
	IsPrivate  bool
	IsArchived bool
	Topic      string
	Messages   []Message // oldest first
}

type user struct {
	ID       string
	Name     string
	RealName string
	Email    string
	TZ       string
}

// Server is the stand-in. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL of the Web API, like https://slack.com/api.
	URL   string
	token string

	mu            sync.Mutex
	requests      []Request
	channels      []*channel
	users         []user
	nextTS        int
	rateLimitNext int // Retry-After seconds of the next request's 429; 0 for none
}

// New starts a stand-in that accepts token, closed when t ends.
func New(t testing.TB, token string) *Server {
	t.Helper()
	s := &Server{
		token:  token,
		nextTS: 1,
		channels: []*channel{
			{ID: GeneralID, Name: "general", Topic: "Company-wide announcements"},
			{ID: RandomID, Name: "random", Topic: "Anything goes"},
			{ID: SecretID, Name: "secret", IsPrivate: true},
		},
		users: []user{
			{ID: AdaID, Name: "ada", RealName: "Ada Lovelace", Email: AdaEmail, TZ: "Europe/London"},
		},
	}
	s.channels[0].Messages = []Message{{Type: "message", User: AdaID, Text: "Welcome to #general", TS: s.ts()}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL + "/api"
	return s
}

// Requests returns what the stand-in received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// History returns a channel's messages, oldest first.
func (s *Server) History(channelID string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.channels {
		if c.ID == channelID {
			return slices.Clone(c.Messages)
		}
	}
	return nil
}

// RateLimitNext makes the next request fail as Slack's rate limit does:
// HTTP 429, Retry-After, ok:false ratelimited.
func (s *Server) RateLimitNext(retryAfterSeconds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimitNext = retryAfterSeconds
}

// ts returns a new message timestamp; s.mu held or not yet shared.
func (s *Server) ts() string {
	n := s.nextTS
	s.nextTS++
	return fmt.Sprintf("1700000000.%06d", n)
}

// args are a method's arguments, from the query, a form or a JSON body.
type args map[string]string

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: strings.TrimPrefix(r.URL.Path, "/api"), Header: r.Header.Clone(), Query: r.URL.Query(), Body: body})

	if s.rateLimitNext > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(s.rateLimitNext))
		s.rateLimitNext = 0
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"ok": false, "error": "ratelimited"})
		return
	}
	method, ok := strings.CutPrefix(r.URL.Path, "/api/")
	handler, known := s.methods()[method]
	if !ok || !known {
		writeJSON(w, http.StatusNotFound, map[string]any{"ok": false, "error": "unknown_method", "req_method": method})
		return
	}
	a, warning, errCode := parseArgs(r, body, method)
	if errCode != "" {
		fail(w, errCode)
		return
	}
	// Slack takes the token from the Authorization header; with a JSON
	// body nowhere else.
	auth := r.Header.Get("Authorization")
	switch {
	case auth == "" && a["token"] == "":
		fail(w, "not_authed")
		return
	case auth != "" && auth != "Bearer "+s.token, auth == "" && a["token"] != s.token:
		fail(w, "invalid_auth")
		return
	}
	reply := handler(a)
	if warning != "" && reply["ok"] == true {
		reply["warning"] = warning
		reply["response_metadata"] = mergeMeta(reply["response_metadata"], warning)
	}
	writeJSON(w, http.StatusOK, reply)
}

type handler func(args) map[string]any

func (s *Server) methods() map[string]handler {
	return map[string]handler{
		"auth.test":             s.authTest,
		"chat.postMessage":      s.postMessage,
		"conversations.list":    s.conversationsList,
		"conversations.history": s.conversationsHistory,
		"users.lookupByEmail":   s.lookupByEmail,
	}
}

// parseArgs reads a method's arguments as Slack does: GET query
// parameters, or a POST body that is a form (application/x-www-form-
// urlencoded) or, for write methods, JSON (application/json, with a
// missing_charset warning when the charset is not given).
func parseArgs(r *http.Request, body []byte, method string) (a args, warning, errCode string) {
	a = args{}
	for k, v := range r.URL.Query() {
		a[k] = v[0]
	}
	switch r.Method {
	case http.MethodGet:
		if method == "chat.postMessage" {
			// A write: Slack documents POST only.
			return nil, "", "invalid_request"
		}
		return a, "", ""
	case http.MethodPost:
	default:
		return nil, "", "invalid_request"
	}
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil && len(body) > 0 {
		return nil, "", "invalid_post_type"
	}
	switch ct {
	case "application/x-www-form-urlencoded", "":
		if ct == "" && len(body) > 0 {
			return nil, "", "invalid_post_type"
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, "", "invalid_form_data"
		}
		for k, v := range form {
			a[k] = v[0]
		}
	case "application/json":
		if method != "chat.postMessage" && method != "auth.test" {
			// Slack reads no JSON body for these read methods: their
			// arguments would be silently lost.
			return nil, "", "invalid_arguments"
		}
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil {
			if len(strings.TrimSpace(string(body))) > 0 && body[0] != '{' {
				return nil, "", "json_not_object"
			}
			return nil, "", "invalid_json"
		}
		for k, v := range obj {
			switch v := v.(type) {
			case string:
				a[k] = v
			case nil:
			default:
				raw, _ := json.Marshal(v)
				a[k] = string(raw)
			}
		}
		if !strings.EqualFold(params["charset"], "utf-8") {
			warning = "missing_charset"
		}
	default:
		return nil, "", "invalid_post_type"
	}
	return a, warning, ""
}

func (s *Server) authTest(args) map[string]any {
	return map[string]any{
		"ok": true, "url": "https://bud-test.slack.com/", "team": "Bud Test", "user": "bud",
		"team_id": TeamID, "user_id": BotID, "bot_id": "B0000000001", "is_enterprise_install": false,
	}
}

func (s *Server) channel(idOrName string) *channel {
	name := strings.TrimPrefix(idOrName, "#")
	for _, c := range s.channels {
		if c.ID == idOrName || c.Name == name {
			return c
		}
	}
	return nil
}

func (s *Server) postMessage(a args) map[string]any {
	if a["channel"] == "" {
		return failure("channel_not_found")
	}
	c := s.channel(a["channel"])
	if c == nil {
		return failure("channel_not_found")
	}
	if c.IsArchived {
		return failure("is_archived")
	}
	if a["text"] == "" && a["blocks"] == "" && a["attachments"] == "" {
		return failure("no_text")
	}
	if ts := a["thread_ts"]; ts != "" && !slices.ContainsFunc(c.Messages, func(m Message) bool { return m.TS == ts }) {
		return failure("thread_not_found")
	}
	m := Message{Type: "message", User: BotID, Text: a["text"], TS: s.ts(), ThreadTS: a["thread_ts"], BotID: "B0000000001"}
	c.Messages = append(c.Messages, m)
	return map[string]any{"ok": true, "channel": c.ID, "ts": m.TS, "message": m}
}

func (s *Server) conversationsList(a args) map[string]any {
	types := strings.Split(a["types"], ",")
	if a["types"] == "" {
		types = []string{"public_channel"}
	}
	for _, t := range types {
		if !slices.Contains([]string{"public_channel", "private_channel", "mpim", "im"}, strings.TrimSpace(t)) {
			return failure("invalid_types")
		}
	}
	var matched []*channel
	for _, c := range s.channels {
		want := "public_channel"
		if c.IsPrivate {
			want = "private_channel"
		}
		if slices.Contains(types, want) {
			matched = append(matched, c)
		}
	}
	page, next, errCode := paginate(len(matched), a)
	if errCode != "" {
		return failure(errCode)
	}
	list := []map[string]any{}
	for _, c := range matched[page[0]:page[1]] {
		list = append(list, map[string]any{
			"id": c.ID, "name": c.Name, "is_channel": !c.IsPrivate, "is_group": c.IsPrivate, "is_private": c.IsPrivate,
			"is_archived": c.IsArchived, "is_member": true, "num_members": 2,
			"topic":   map[string]any{"value": c.Topic, "creator": "", "last_set": 0},
			"purpose": map[string]any{"value": "", "creator": "", "last_set": 0},
		})
	}
	return map[string]any{"ok": true, "channels": list, "response_metadata": map[string]any{"next_cursor": next}}
}

func (s *Server) conversationsHistory(a args) map[string]any {
	c := s.channel(a["channel"])
	if a["channel"] == "" || c == nil || c.ID != a["channel"] {
		// History takes a channel ID, not a name.
		return failure("channel_not_found")
	}
	var msgs []Message
	for i := len(c.Messages) - 1; i >= 0; i-- { // newest first
		m := c.Messages[i]
		if a["oldest"] != "" && m.TS <= a["oldest"] || a["latest"] != "" && m.TS >= a["latest"] {
			continue
		}
		msgs = append(msgs, m)
	}
	page, next, errCode := paginate(len(msgs), a)
	if errCode != "" {
		return failure(errCode)
	}
	out := []Message{}
	out = append(out, msgs[page[0]:page[1]]...)
	return map[string]any{
		"ok": true, "messages": out, "has_more": next != "", "pin_count": 0,
		"response_metadata": map[string]any{"next_cursor": next},
	}
}

func (s *Server) lookupByEmail(a args) map[string]any {
	if a["email"] == "" {
		return failure("invalid_arguments")
	}
	for _, u := range s.users {
		if strings.EqualFold(u.Email, a["email"]) {
			return map[string]any{"ok": true, "user": map[string]any{
				"id": u.ID, "team_id": TeamID, "name": u.Name, "deleted": false, "real_name": u.RealName, "tz": u.TZ,
				"is_bot": false,
				"profile": map[string]any{
					"real_name": u.RealName, "display_name": u.Name, "email": u.Email,
				},
			}}
		}
	}
	return failure("users_not_found")
}

// paginate picks the page [from, to) of n items by the cursor and limit
// arguments and returns the next page's cursor ("" on the last page).
func paginate(n int, a args) (page [2]int, next, errCode string) {
	limit := 100
	if v := a["limit"]; v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 {
			return page, "", "invalid_limit"
		}
		limit = min(l, 1000)
	}
	from := 0
	if c := a["cursor"]; c != "" {
		v, ok := strings.CutPrefix(c, "offset:")
		f, err := strconv.Atoi(v)
		if !ok || err != nil || f < 0 || f > n {
			return page, "", "invalid_cursor"
		}
		from = f
	}
	to := min(from+limit, n)
	if to < n {
		next = "offset:" + strconv.Itoa(to)
	}
	return [2]int{from, to}, next, ""
}

func failure(code string) map[string]any { return map[string]any{"ok": false, "error": code} }

func fail(w http.ResponseWriter, code string) { writeJSON(w, http.StatusOK, failure(code)) }

func mergeMeta(meta any, warning string) map[string]any {
	m, _ := meta.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	m["warnings"] = []string{warning}
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
