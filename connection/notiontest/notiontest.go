// Package notiontest is a stand-in for Notion's API, for tests: point a
// notion connection's Config.BaseURL at Server.URL. It checks each request
// as Notion documents it (method and path, Authorization: Bearer,
// Notion-Version, Content-Type: application/json on a body, required body
// fields, Notion's size limits) and answers with Notion's error objects
// ({"object":"error","status":…,"code":…,"message":…}) when something is
// off. It keeps state: a created page can be read and found by search,
// appended blocks show up in the page.
//
// Seeded: the page "Bud handbook" (HandbookID) with a heading, a
// paragraph, a list item, a to-do and a code block; the database "Tasks"
// (TasksID); the integration's bot user.
package notiontest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// Version is the Notion-Version the stand-in accepts.
const Version = "2022-06-28"

// Seeded IDs.
const (
	HandbookID = "6e1d0a5c-2b5e-4c55-9a34-0f3f6a7d2b10"
	TasksID    = "0c4b2f1e-8d3a-4b6f-a2c1-5e7d9f0a1b23"
	BotUserID  = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
)

// Request is one request the stand-in received.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Query  url.Values
	Body   []byte
}

// Block is a stored block: its type and its text.
type Block struct {
	ID      string
	Type    string
	Text    string
	Checked bool
}

type page struct {
	ID       string
	ParentID string // "" for a workspace page
	Title    string
	Blocks   []Block
	Database bool
}

// Server is the stand-in. Its methods are safe for concurrent use.
type Server struct {
	// URL is the API's base URL, like https://api.notion.com.
	URL   string
	token string

	mu       sync.Mutex
	requests []Request
	pages    []*page
	nextID   int
}

// New starts a stand-in that accepts token, closed when t ends.
func New(t testing.TB, token string) *Server {
	t.Helper()
	s := &Server{token: token, nextID: 1}
	s.pages = []*page{
		{ID: HandbookID, Title: "Bud handbook", Blocks: []Block{
			{ID: s.newID(), Type: "heading_1", Text: "Welcome"},
			{ID: s.newID(), Type: "paragraph", Text: "Bud runs prompts on Temporal."},
			{ID: s.newID(), Type: "bulleted_list_item", Text: "Ship small changes"},
			{ID: s.newID(), Type: "to_do", Text: "Read the style guide", Checked: true},
			{ID: s.newID(), Type: "code", Text: "make test"},
		}},
		{ID: TasksID, Title: "Tasks", Database: true},
	}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Requests returns what the stand-in received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Blocks returns the blocks of a page or block, nil if there is none.
func (s *Server) Blocks(id string) []Block {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.page(id); p != nil {
		return slices.Clone(p.Blocks)
	}
	return nil
}

// newID returns a fresh UUID-shaped ID; s.mu held or not yet shared.
func (s *Server) newID() string {
	n := s.nextID
	s.nextID++
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
}

// writeError answers with Notion's error object.
func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"object": "error", "status": status, "code": code, "message": message})
}

var (
	pagePath     = regexp.MustCompile(`^/v1/pages/([^/]+)$`)
	childrenPath = regexp.MustCompile(`^/v1/blocks/([^/]+)/children$`)
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Query: r.URL.Query(), Body: body})

	if r.Header.Get("Authorization") != "Bearer "+s.token {
		writeError(w, http.StatusUnauthorized, "unauthorized", "API token is invalid.")
		return
	}
	switch v := r.Header.Get("Notion-Version"); v {
	case Version:
	case "":
		writeError(w, http.StatusBadRequest, "missing_version", "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.")
		return
	default:
		writeError(w, http.StatusBadRequest, "validation_error", fmt.Sprintf("Notion-Version header failed validation: the stand-in speaks only %s, instead was `%s`.", Version, v))
		return
	}
	var obj map[string]json.RawMessage
	if r.Method == http.MethodPost || r.Method == http.MethodPatch {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if ct != "application/json" {
			writeError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/json.")
			return
		}
		if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
			writeError(w, http.StatusBadRequest, "invalid_json", "Error parsing JSON body.")
			return
		}
	}
	switch path := r.URL.Path; {
	case path == "/v1/users/me" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"object": "user", "id": BotUserID, "type": "bot", "name": "Bud", "avatar_url": nil,
			"bot": map[string]any{"owner": map[string]any{"type": "workspace", "workspace": true}, "workspace_name": "Bud Test"},
		})
	case path == "/v1/search" && r.Method == http.MethodPost:
		s.search(w, obj)
	case path == "/v1/pages" && r.Method == http.MethodPost:
		s.createPage(w, obj)
	case pagePath.MatchString(path) && r.Method == http.MethodGet:
		s.getPage(w, pagePath.FindStringSubmatch(path)[1])
	case childrenPath.MatchString(path) && r.Method == http.MethodGet:
		s.children(w, childrenPath.FindStringSubmatch(path)[1], r.URL.Query())
	case childrenPath.MatchString(path) && r.Method == http.MethodPatch:
		s.appendChildren(w, childrenPath.FindStringSubmatch(path)[1], obj)
	default:
		writeError(w, http.StatusBadRequest, "invalid_request_url", "Invalid request URL.")
	}
}

// canonicalID turns a Notion ID with or without dashes into the dashed
// form; ok is false when it is not a UUID.
func canonicalID(id string) (string, bool) {
	hex := strings.ReplaceAll(id, "-", "")
	if len(hex) != 32 {
		return "", false
	}
	for _, c := range hex {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return "", false
		}
	}
	hex = strings.ToLower(hex)
	return hex[:8] + "-" + hex[8:12] + "-" + hex[12:16] + "-" + hex[16:20] + "-" + hex[20:], true
}

func (s *Server) page(id string) *page {
	id, ok := canonicalID(id)
	if !ok {
		return nil
	}
	for _, p := range s.pages {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// pathID finds the page a path names, answering Notion's error when the
// ID is malformed or names nothing (the stand-in's blocks are leaves: only
// pages have children).
func (s *Server) pathID(w http.ResponseWriter, name, id string) (*page, bool) {
	cid, ok := canonicalID(id)
	if !ok {
		writeError(w, http.StatusBadRequest, "validation_error", fmt.Sprintf("path failed validation: path.%s should be a valid uuid, instead was `%s`.", name, id))
		return nil, false
	}
	p := s.page(cid)
	if p == nil || p.Database {
		kind := "page"
		if name == "block_id" {
			kind = "block"
		}
		writeError(w, http.StatusNotFound, "object_not_found", fmt.Sprintf("Could not find %s with ID: %s. Make sure the relevant pages and databases are shared with your integration.", kind, cid))
		return nil, false
	}
	return p, true
}

func (s *Server) pageObject(p *page) map[string]any {
	title := richTextOut(p.Title)
	url := "https://www.notion.so/" + strings.ReplaceAll(p.ID, "-", "")
	if p.Database {
		return map[string]any{
			"object": "database", "id": p.ID, "title": title, "url": url, "archived": false,
			"created_time": "2024-01-01T00:00:00.000Z", "last_edited_time": "2024-01-01T00:00:00.000Z",
			"properties": map[string]any{"Name": map[string]any{"id": "title", "name": "Name", "type": "title", "title": map[string]any{}}},
			"parent":     map[string]any{"type": "workspace", "workspace": true},
		}
	}
	parent := map[string]any{"type": "workspace", "workspace": true}
	if p.ParentID != "" {
		parent = map[string]any{"type": "page_id", "page_id": p.ParentID}
	}
	return map[string]any{
		"object": "page", "id": p.ID, "url": url, "archived": false, "in_trash": false,
		"created_time": "2024-01-01T00:00:00.000Z", "last_edited_time": "2024-01-01T00:00:00.000Z",
		"parent":     parent,
		"properties": map[string]any{"title": map[string]any{"id": "title", "type": "title", "title": title}},
	}
}

func richTextOut(text string) []map[string]any {
	if text == "" {
		return []map[string]any{}
	}
	return []map[string]any{{
		"type": "text", "text": map[string]any{"content": text, "link": nil},
		"annotations": map[string]any{"bold": false, "italic": false, "strikethrough": false, "underline": false, "code": false, "color": "default"},
		"plain_text":  text, "href": nil,
	}}
}

func blockObject(parentID string, b Block) map[string]any {
	content := map[string]any{"rich_text": richTextOut(b.Text), "color": "default"}
	switch b.Type {
	case "to_do":
		content["checked"] = b.Checked
	case "code":
		content = map[string]any{"rich_text": richTextOut(b.Text), "language": "shell", "caption": []any{}}
	case "child_page":
		content = map[string]any{"title": b.Text}
	}
	return map[string]any{
		"object": "block", "id": b.ID, "type": b.Type, b.Type: content,
		"parent":       map[string]any{"type": "page_id", "page_id": parentID},
		"has_children": false, "archived": false, "in_trash": false,
		"created_time": "2024-01-01T00:00:00.000Z", "last_edited_time": "2024-01-01T00:00:00.000Z",
	}
}

func (s *Server) search(w http.ResponseWriter, obj map[string]json.RawMessage) {
	var req struct {
		Query  string `json:"query"`
		Filter *struct {
			Property string `json:"property"`
			Value    string `json:"value"`
		} `json:"filter"`
		PageSize    *int   `json:"page_size"`
		StartCursor string `json:"start_cursor"`
	}
	if !decode(w, obj, &req) {
		return
	}
	if f := req.Filter; f != nil && (f.Property != "object" || (f.Value != "page" && f.Value != "database")) {
		writeError(w, http.StatusBadRequest, "validation_error", `body failed validation: body.filter.value should be "page" or "database", and body.filter.property should be "object".`)
		return
	}
	var hits []*page
	for _, p := range s.pages {
		if req.Filter != nil && (req.Filter.Value == "database") != p.Database {
			continue
		}
		if strings.Contains(strings.ToLower(p.Title), strings.ToLower(req.Query)) {
			hits = append(hits, p)
		}
	}
	from, to, next, ok := pageOf(w, len(hits), req.PageSize, req.StartCursor)
	if !ok {
		return
	}
	results := []map[string]any{}
	for _, p := range hits[from:to] {
		results = append(results, s.pageObject(p))
	}
	writeJSON(w, http.StatusOK, list(results, next, "page_or_database"))
}

func (s *Server) getPage(w http.ResponseWriter, id string) {
	p, ok := s.pathID(w, "page_id", id)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.pageObject(p))
}

func (s *Server) children(w http.ResponseWriter, id string, q url.Values) {
	p, ok := s.pathID(w, "block_id", id)
	if !ok {
		return
	}
	var size *int
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "validation_error", "query failed validation: query.page_size should be a number.")
			return
		}
		size = &n
	}
	from, to, next, ok := pageOf(w, len(p.Blocks), size, q.Get("start_cursor"))
	if !ok {
		return
	}
	results := []map[string]any{}
	for _, b := range p.Blocks[from:to] {
		results = append(results, blockObject(p.ID, b))
	}
	writeJSON(w, http.StatusOK, list(results, next, "block"))
}

func (s *Server) createPage(w http.ResponseWriter, obj map[string]json.RawMessage) {
	var req struct {
		Parent *struct {
			PageID     string `json:"page_id"`
			DatabaseID string `json:"database_id"`
		} `json:"parent"`
		Properties map[string]struct {
			Title []inRichText `json:"title"`
		} `json:"properties"`
		Children []json.RawMessage `json:"children"`
	}
	if !decode(w, obj, &req) {
		return
	}
	switch {
	case req.Parent == nil:
		writeError(w, http.StatusBadRequest, "validation_error", "body failed validation: body.parent should be defined, instead was `undefined`.")
		return
	case req.Parent.PageID == "":
		writeError(w, http.StatusBadRequest, "validation_error", "body failed validation: body.parent.page_id should be defined, instead was `undefined`.")
		return
	}
	parent, ok := s.pathID(w, "page_id", req.Parent.PageID)
	if !ok {
		return
	}
	title, ok := req.Properties["title"]
	if !ok {
		writeError(w, http.StatusBadRequest, "validation_error", "body failed validation: body.properties.title should be defined, instead was `undefined`.")
		return
	}
	text, msg := textOf(title.Title, "body.properties.title.title")
	if msg != "" {
		writeError(w, http.StatusBadRequest, "validation_error", msg)
		return
	}
	blocks, msg := s.parseBlocks(req.Children, "body.children")
	if msg != "" {
		writeError(w, http.StatusBadRequest, "validation_error", msg)
		return
	}
	p := &page{ID: s.newID(), ParentID: parent.ID, Title: text, Blocks: blocks}
	s.pages = append(s.pages, p)
	parent.Blocks = append(parent.Blocks, Block{ID: p.ID, Type: "child_page", Text: text})
	writeJSON(w, http.StatusOK, s.pageObject(p))
}

func (s *Server) appendChildren(w http.ResponseWriter, id string, obj map[string]json.RawMessage) {
	p, ok := s.pathID(w, "block_id", id)
	if !ok {
		return
	}
	var req struct {
		Children []json.RawMessage `json:"children"`
	}
	if !decode(w, obj, &req) {
		return
	}
	if req.Children == nil {
		writeError(w, http.StatusBadRequest, "validation_error", "body failed validation: body.children should be defined, instead was `undefined`.")
		return
	}
	blocks, msg := s.parseBlocks(req.Children, "body.children")
	if msg != "" {
		writeError(w, http.StatusBadRequest, "validation_error", msg)
		return
	}
	p.Blocks = append(p.Blocks, blocks...)
	results := []map[string]any{}
	for _, b := range blocks {
		results = append(results, blockObject(p.ID, b))
	}
	writeJSON(w, http.StatusOK, list(results, "", "block"))
}

type inRichText struct {
	Type string `json:"type"`
	Text *struct {
		Content *string `json:"content"`
	} `json:"text"`
}

// textTypes are the block types the stand-in stores.
var textTypes = []string{"paragraph", "heading_1", "heading_2", "heading_3", "bulleted_list_item", "numbered_list_item", "to_do", "quote", "code"}

// parseBlocks checks blocks as Notion does: at most 100, a known type
// with its object, rich text of at most 2000 characters an item.
func (s *Server) parseBlocks(raw []json.RawMessage, field string) ([]Block, string) {
	if len(raw) > 100 {
		return nil, fmt.Sprintf("body failed validation: %s.length should be ≤ `100`, instead was `%d`.", field, len(raw))
	}
	var out []Block
	for i, r := range raw {
		var head map[string]json.RawMessage
		if json.Unmarshal(r, &head) != nil {
			return nil, fmt.Sprintf("body failed validation: %s[%d] should be an object.", field, i)
		}
		var typ string
		_ = json.Unmarshal(head["type"], &typ)
		if typ == "" {
			// Notion infers the type from the one type key there is.
			for _, t := range textTypes {
				if _, ok := head[t]; ok {
					typ = t
				}
			}
		}
		if !slices.Contains(textTypes, typ) {
			return nil, fmt.Sprintf("body failed validation: %s[%d].type should be one of the block types the stand-in knows, instead was `%s`.", field, i, typ)
		}
		var content struct {
			RichText []inRichText `json:"rich_text"`
			Checked  bool         `json:"checked"`
		}
		if _, ok := head[typ]; !ok || json.Unmarshal(head[typ], &content) != nil || content.RichText == nil {
			return nil, fmt.Sprintf("body failed validation: %s[%d].%s.rich_text should be defined, instead was `undefined`.", field, i, typ)
		}
		text, msg := textOf(content.RichText, fmt.Sprintf("%s[%d].%s.rich_text", field, i, typ))
		if msg != "" {
			return nil, msg
		}
		out = append(out, Block{ID: s.newID(), Type: typ, Text: text, Checked: content.Checked})
	}
	return out, ""
}

func textOf(items []inRichText, field string) (string, string) {
	if len(items) > 100 {
		return "", fmt.Sprintf("body failed validation: %s.length should be ≤ `100`, instead was `%d`.", field, len(items))
	}
	var b strings.Builder
	for i, it := range items {
		if it.Text == nil || it.Text.Content == nil {
			return "", fmt.Sprintf("body failed validation: %s[%d].text.content should be defined, instead was `undefined`.", field, i)
		}
		if n := utf8.RuneCountInString(*it.Text.Content); n > 2000 {
			return "", fmt.Sprintf("body failed validation: %s[%d].text.content.length should be ≤ `2000`, instead was `%d`.", field, i, n)
		}
		b.WriteString(*it.Text.Content)
	}
	return b.String(), ""
}

// pageOf picks [from, to) of n items by page_size (default and maximum
// 100) and start_cursor, and the next cursor ("" on the last page).
func pageOf(w http.ResponseWriter, n int, size *int, cursor string) (from, to int, next string, ok bool) {
	limit := 100
	if size != nil {
		if *size < 1 || *size > 100 {
			writeError(w, http.StatusBadRequest, "validation_error", fmt.Sprintf("body failed validation: page_size should be ≤ `100` and ≥ `1`, instead was `%d`.", *size))
			return 0, 0, "", false
		}
		limit = *size
	}
	if cursor != "" {
		v, found := strings.CutPrefix(cursor, "offset-")
		f, err := strconv.Atoi(v)
		if !found || err != nil || f < 0 || f > n {
			writeError(w, http.StatusBadRequest, "validation_error", "start_cursor should be a valid cursor.")
			return 0, 0, "", false
		}
		from = f
	}
	to = min(from+limit, n)
	if to < n {
		next = "offset-" + strconv.Itoa(to)
	}
	return from, to, next, true
}

func list(results []map[string]any, next, typ string) map[string]any {
	var cursor any
	if next != "" {
		cursor = next
	}
	return map[string]any{"object": "list", "results": results, "next_cursor": cursor, "has_more": next != "", "type": typ, typ: map[string]any{}}
}

func decode(w http.ResponseWriter, obj map[string]json.RawMessage, v any) bool {
	raw, _ := json.Marshal(obj)
	if err := json.Unmarshal(raw, v); err != nil {
		writeError(w, http.StatusBadRequest, "validation_error", "body failed validation: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
