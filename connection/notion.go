package connection

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// DefaultNotionBaseURL is Notion's API; Config.BaseURL replaces it.
const DefaultNotionBaseURL = "https://api.notion.com"

// NotionVersion is the Notion-Version the client speaks.
const NotionVersion = "2022-06-28"

// Notion's limits on one request, as it documents them.
const (
	notionMaxBlocks   = 100  // children per create or append
	notionMaxText     = 2000 // characters of one rich text item's content
	notionMaxPageSize = 100
	notionMaxPages    = 50 // pages of block children get_page follows
	notionReplyLimit  = 8 << 20
)

var notionTools, notionSchemas = builtinTools(
	Tool{
		Name:        "search",
		Description: "Search the Notion pages and databases shared with the integration by title. Returns ID, title and URL of each.",
		InputSchema: json.RawMessage(`{
			"type": "object",
			"properties": {
				"query": {"type": "string", "description": "Words of the title; empty lists everything shared"},
				"filter": {"type": "string", "enum": ["page", "database"], "description": "Only pages or only databases"},
				"page_size": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Results per page (default 100)"},
				"start_cursor": {"type": "string", "description": "next_cursor of the previous page"}
			},
			"additionalProperties": false
		}`),
	},
	Tool{
		Name:        "get_page",
		Description: "Read a Notion page: its title, then its blocks as plain text, one line per block.",
		InputSchema: json.RawMessage(`{
			"type": "object",
			"properties": {
				"page_id": {"type": "string", "minLength": 1, "description": "Page ID (a UUID, with or without dashes)"}
			},
			"required": ["page_id"],
			"additionalProperties": false
		}`),
	},
	Tool{
		Name:        "create_page",
		Description: "Create a Notion page under a parent page, with a title and optional text content (paragraphs separated by blank lines). Returns the new page's ID and URL.",
		InputSchema: json.RawMessage(`{
			"type": "object",
			"properties": {
				"parent_page_id": {"type": "string", "minLength": 1, "description": "ID of the parent page"},
				"title": {"type": "string", "minLength": 1, "description": "Title of the new page"},
				"content": {"type": "string", "description": "Text; a blank line starts a new paragraph"}
			},
			"required": ["parent_page_id", "title"],
			"additionalProperties": false
		}`),
	},
	Tool{
		Name:        "append_blocks",
		Description: "Append paragraphs of text to the end of a Notion page or block.",
		InputSchema: json.RawMessage(`{
			"type": "object",
			"properties": {
				"block_id": {"type": "string", "minLength": 1, "description": "ID of the page or block to append to"},
				"content": {"type": "string", "minLength": 1, "description": "Text; a blank line starts a new paragraph"}
			},
			"required": ["block_id", "content"],
			"additionalProperties": false
		}`),
	},
)

// notionClient calls Notion's API with an integration token. Safe for
// concurrent use.
type notionClient struct {
	api  apiCaller
	base string
}

func newNotion(c Connection, o Options, red redactor) *notionClient {
	base := c.Config.BaseURL
	if base == "" {
		base = DefaultNotionBaseURL
	}
	client, t := newHTTPClient(o.HTTPClient, base, http.Header{
		"Authorization":  {"Bearer " + c.Credentials.Token},
		"Notion-Version": {NotionVersion},
	})
	return &notionClient{api: apiCaller{client: client, t: t, red: red, where: "Notion at " + base}, base: base}
}

// notionError is an answer of Notion that the model should read: the
// object does not exist (or is not shared), or the arguments break a rule.
type notionError struct {
	Code    string
	Message string
}

// Tools checks the token with GET /v1/users/me, then returns Notion's tools.
func (n *notionClient) Tools(ctx context.Context) ([]Tool, error) {
	if _, nerr, err := n.request(ctx, http.MethodGet, "/v1/users/me", nil, nil); err != nil {
		return nil, err
	} else if nerr != nil {
		return nil, n.api.red.errorf(ReasonRejected, 0, "Notion refused GET /v1/users/me (%s)%s", nerr.Code, colon(nerr.Message))
	}
	return append([]Tool(nil), notionTools...), nil
}

// Call calls one of Notion's tools. object_not_found and validation_error
// are a Result with IsError carrying Notion's message.
func (n *notionClient) Call(ctx context.Context, name string, arguments json.RawMessage) (Result, error) {
	schema, ok := notionSchemas[name]
	if !ok {
		return Result{}, unknownTool(n.api.red, KindNotion, name)
	}
	args, e := checkArguments(n.api.red, name, schema, arguments)
	if e != nil {
		return Result{}, e
	}
	var a struct {
		Query        string `json:"query"`
		Filter       string `json:"filter"`
		PageSize     int    `json:"page_size"`
		StartCursor  string `json:"start_cursor"`
		PageID       string `json:"page_id"`
		ParentPageID string `json:"parent_page_id"`
		Title        string `json:"title"`
		Content      string `json:"content"`
		BlockID      string `json:"block_id"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return Result{}, n.api.red.errorf(ReasonRejected, 0, "the arguments of tool %s do not match its schema: %v", name, err)
	}
	var text string
	var nerr *notionError
	var err error
	switch name {
	case "search":
		text, nerr, err = n.search(ctx, a.Query, a.Filter, a.PageSize, a.StartCursor)
	case "get_page":
		text, nerr, err = n.getPage(ctx, a.PageID)
	case "create_page":
		text, nerr, err = n.createPage(ctx, a.ParentPageID, a.Title, a.Content)
	case "append_blocks":
		text, nerr, err = n.appendBlocks(ctx, a.BlockID, a.Content)
	}
	if err != nil {
		return Result{}, err
	}
	if nerr != nil {
		return n.api.red.result(fmt.Sprintf("Notion: %s: %s", nerr.Code, nerr.Message), true), nil
	}
	return n.api.red.result(text, false), nil
}

// Close releases idle connections.
func (n *notionClient) Close() error {
	n.api.t.closeIdle()
	return nil
}

func (n *notionClient) search(ctx context.Context, query, filter string, pageSize int, cursor string) (string, *notionError, error) {
	body := map[string]any{}
	if query != "" {
		body["query"] = query
	}
	if filter != "" {
		body["filter"] = map[string]string{"property": "object", "value": filter}
	}
	if pageSize > 0 {
		body["page_size"] = pageSize
	}
	if cursor != "" {
		body["start_cursor"] = cursor
	}
	var r struct {
		Results    []notionObject `json:"results"`
		HasMore    bool           `json:"has_more"`
		NextCursor *string        `json:"next_cursor"`
	}
	if nerr, err := n.do(ctx, http.MethodPost, "/v1/search", nil, body, &r); err != nil || nerr != nil {
		return "", nerr, err
	}
	type hit struct {
		Object string `json:"object"`
		ID     string `json:"id"`
		Title  string `json:"title"`
		URL    string `json:"url,omitempty"`
	}
	out := struct {
		Results    []hit  `json:"results"`
		NextCursor string `json:"next_cursor,omitempty"`
	}{Results: []hit{}}
	for _, o := range r.Results {
		out.Results = append(out.Results, hit{Object: o.Object, ID: o.ID, Title: o.title(), URL: o.URL})
	}
	if r.HasMore && r.NextCursor != nil {
		out.NextCursor = *r.NextCursor
	}
	raw, _ := json.Marshal(out)
	return string(raw), nil, nil
}

func (n *notionClient) getPage(ctx context.Context, pageID string) (string, *notionError, error) {
	id, nerr := notionID("page_id", pageID)
	if nerr != nil {
		return "", nerr, nil
	}
	var page notionObject
	if nerr, err := n.do(ctx, http.MethodGet, "/v1/pages/"+id, nil, nil, &page); err != nil || nerr != nil {
		return "", nerr, err
	}
	var b strings.Builder
	b.WriteString(page.title())
	b.WriteString("\n")
	cursor := ""
	for range notionMaxPages {
		q := url.Values{"page_size": {fmt.Sprint(notionMaxPageSize)}}
		if cursor != "" {
			q.Set("start_cursor", cursor)
		}
		var r struct {
			Results    []notionBlock `json:"results"`
			HasMore    bool          `json:"has_more"`
			NextCursor *string       `json:"next_cursor"`
		}
		if nerr, err := n.do(ctx, http.MethodGet, "/v1/blocks/"+id+"/children", q, nil, &r); err != nil || nerr != nil {
			return "", nerr, err
		}
		for _, blk := range r.Results {
			if line, ok := blk.line(); ok {
				b.WriteString("\n")
				b.WriteString(line)
			}
		}
		if !r.HasMore || r.NextCursor == nil || *r.NextCursor == "" {
			return b.String(), nil, nil
		}
		cursor = *r.NextCursor
	}
	b.WriteString(fmt.Sprintf("\n[truncated: the page has more than %d blocks]", notionMaxPages*notionMaxPageSize))
	return b.String(), nil, nil
}

func (n *notionClient) createPage(ctx context.Context, parentID, title, content string) (string, *notionError, error) {
	parentID, nerr := notionID("parent_page_id", parentID)
	if nerr != nil {
		return "", nerr, nil
	}
	blocks := paragraphBlocks(content)
	first := blocks
	if len(first) > notionMaxBlocks {
		first = first[:notionMaxBlocks]
	}
	body := map[string]any{
		"parent":     map[string]string{"page_id": parentID},
		"properties": map[string]any{"title": map[string]any{"title": richText(title)}},
	}
	if len(first) > 0 {
		body["children"] = first
	}
	var page notionObject
	if nerr, err := n.do(ctx, http.MethodPost, "/v1/pages", nil, body, &page); err != nil || nerr != nil {
		return "", nerr, err
	}
	if rest := blocks[len(first):]; len(rest) > 0 {
		if _, nerr, err := n.appendInBatches(ctx, page.ID, rest); err != nil || nerr != nil {
			return "", nerr, err
		}
	}
	raw, _ := json.Marshal(struct {
		ID    string `json:"id"`
		URL   string `json:"url,omitempty"`
		Title string `json:"title"`
	}{page.ID, page.URL, page.title()})
	return string(raw), nil, nil
}

func (n *notionClient) appendBlocks(ctx context.Context, blockID, content string) (string, *notionError, error) {
	blockID, nerr := notionID("block_id", blockID)
	if nerr != nil {
		return "", nerr, nil
	}
	ids, nerr, err := n.appendInBatches(ctx, blockID, paragraphBlocks(content))
	if err != nil || nerr != nil {
		return "", nerr, err
	}
	raw, _ := json.Marshal(struct {
		Appended int      `json:"appended"`
		BlockIDs []string `json:"block_ids"`
	}{len(ids), ids})
	return string(raw), nil, nil
}

// appendInBatches appends blocks notionMaxBlocks at a time and returns the
// new blocks' IDs.
func (n *notionClient) appendInBatches(ctx context.Context, blockID string, blocks []map[string]any) ([]string, *notionError, error) {
	ids := []string{}
	for len(blocks) > 0 {
		batch := blocks
		if len(batch) > notionMaxBlocks {
			batch = batch[:notionMaxBlocks]
		}
		blocks = blocks[len(batch):]
		var r struct {
			Results []notionBlock `json:"results"`
		}
		if nerr, err := n.do(ctx, http.MethodPatch, "/v1/blocks/"+blockID+"/children", nil, map[string]any{"children": batch}, &r); err != nil || nerr != nil {
			return nil, nerr, err
		}
		// Notion answers with the parent's children after the append:
		// the new ones are the last.
		res := r.Results
		if len(res) > len(batch) {
			res = res[len(res)-len(batch):]
		}
		for _, b := range res {
			ids = append(ids, b.ID)
		}
	}
	return ids, nil, nil
}

// do sends a request and decodes a 200 reply into out.
func (n *notionClient) do(ctx context.Context, method, path string, query url.Values, body, out any) (*notionError, error) {
	raw, nerr, err := n.request(ctx, method, path, query, body)
	if err != nil || nerr != nil {
		return nerr, err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, n.api.red.errorf(ReasonUnavailable, http.StatusOK, "Notion's answer to %s %s is not what it documents: %v", method, path, err)
	}
	return nil, nil
}

// request sends one request as Notion documents it (Bearer token,
// Notion-Version, a JSON body) and sorts its errors: 401/403 a bad token,
// 409/429/5xx an outage, object_not_found and validation_error for the
// model, anything else a request this client got wrong.
func (n *notionClient) request(ctx context.Context, method, path string, query url.Values, body any) (json.RawMessage, *notionError, error) {
	red := n.api.red
	contentType := ""
	if body != nil {
		contentType = "application/json"
	}
	req, err := n.api.newRequest(ctx, method, joinURL(n.base, path), query, body, contentType)
	if err != nil {
		return nil, nil, err
	}
	r, err := n.api.send(req, notionReplyLimit)
	if err != nil {
		return nil, nil, err
	}
	if r.status == http.StatusOK && !r.truncated {
		return r.body, nil, nil
	}
	var e struct {
		Object  string `json:"object"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(r.body, &e)
	if e.Code == "" {
		e.Code = fmt.Sprintf("HTTP %d", r.status)
	}
	switch {
	case r.status == http.StatusOK: // truncated
		return nil, nil, red.errorf(ReasonUnavailable, r.status, "Notion's answer to %s %s is over %d bytes", method, path, notionReplyLimit)
	case r.status == http.StatusUnauthorized || r.status == http.StatusForbidden:
		return nil, nil, red.errorf(ReasonUnauthorized, r.status, "Notion refused the token (%s)%s", e.Code, colon(e.Message))
	case r.status == http.StatusTooManyRequests:
		return nil, nil, red.errorf(ReasonUnavailable, r.status, "Notion is rate limiting requests%s%s", retryAfterText(r.header), colon(e.Message))
	case r.status == http.StatusConflict || r.status >= 500:
		return nil, nil, red.errorf(ReasonUnavailable, r.status, "Notion is unavailable: HTTP %d (%s) on %s %s%s", r.status, e.Code, method, path, colon(e.Message))
	case e.Code == "object_not_found" || e.Code == "validation_error":
		return nil, &notionError{Code: e.Code, Message: e.Message}, nil
	default:
		return nil, nil, red.errorf(ReasonRejected, r.status, "Notion refused %s %s: HTTP %d (%s)%s", method, path, r.status, e.Code, colon(e.Message))
	}
}

// notionObject is a page or a database, as search and pages return them.
type notionObject struct {
	Object     string                     `json:"object"`
	ID         string                     `json:"id"`
	URL        string                     `json:"url"`
	Title      []notionRichText           `json:"title"` // a database's
	Properties map[string]json.RawMessage `json:"properties"`
}

// title is a page's title property, or a database's title.
func (o notionObject) title() string {
	if o.Object == "database" {
		return plainText(o.Title)
	}
	for _, raw := range o.Properties {
		var p struct {
			Type  string           `json:"type"`
			Title []notionRichText `json:"title"`
		}
		if json.Unmarshal(raw, &p) == nil && p.Type == "title" {
			return plainText(p.Title)
		}
	}
	return ""
}

type notionRichText struct {
	PlainText string `json:"plain_text"`
	Text      *struct {
		Content string `json:"content"`
	} `json:"text"`
}

func plainText(rt []notionRichText) string {
	var b strings.Builder
	for _, t := range rt {
		switch {
		case t.PlainText != "":
			b.WriteString(t.PlainText)
		case t.Text != nil:
			b.WriteString(t.Text.Content)
		}
	}
	return b.String()
}

// notionBlock is a block with the fields of the types get_page reads.
type notionBlock struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	raw  map[string]json.RawMessage
}

func (b *notionBlock) UnmarshalJSON(data []byte) error {
	var head struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	b.ID, b.Type = head.ID, head.Type
	return json.Unmarshal(data, &b.raw)
}

// line is a block as one line of plain text; ok is false for a block with
// nothing to read (a divider).
func (b notionBlock) line() (string, bool) {
	var v struct {
		RichText []notionRichText `json:"rich_text"`
		Checked  bool             `json:"checked"`
		Language string           `json:"language"`
		Title    string           `json:"title"`
	}
	_ = json.Unmarshal(b.raw[b.Type], &v)
	text := plainText(v.RichText)
	switch b.Type {
	case "paragraph":
		return text, true
	case "heading_1":
		return "# " + text, true
	case "heading_2":
		return "## " + text, true
	case "heading_3":
		return "### " + text, true
	case "bulleted_list_item":
		return "- " + text, true
	case "numbered_list_item":
		return "1. " + text, true
	case "to_do":
		if v.Checked {
			return "[x] " + text, true
		}
		return "[ ] " + text, true
	case "quote":
		return "> " + text, true
	case "code":
		if v.Language != "" && v.Language != "plain text" {
			return "```" + v.Language + " " + text + "```", true
		}
		return "```" + text + "```", true
	case "child_page", "child_database":
		return fmt.Sprintf("[%s %s: %s]", strings.ReplaceAll(b.Type, "_", " "), b.ID, v.Title), true
	case "divider":
		return "", false
	default:
		if text != "" {
			return text, true
		}
		return "[" + b.Type + "]", true
	}
}

// paragraphBlocks splits text into paragraph blocks at blank lines.
func paragraphBlocks(text string) []map[string]any {
	var blocks []map[string]any
	for _, p := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		p = strings.Trim(p, "\n")
		if strings.TrimSpace(p) == "" {
			continue
		}
		blocks = append(blocks, map[string]any{
			"object":    "block",
			"type":      "paragraph",
			"paragraph": map[string]any{"rich_text": richText(p)},
		})
	}
	return blocks
}

// richText is text as rich text items of at most notionMaxText characters
// each, cut on rune boundaries.
func richText(text string) []map[string]any {
	var items []map[string]any
	for text != "" {
		cut := len(text)
		if utf8.RuneCountInString(text) > notionMaxText {
			cut = 0
			for i := 0; i < notionMaxText; i++ {
				_, size := utf8.DecodeRuneInString(text[cut:])
				cut += size
			}
		}
		items = append(items, map[string]any{"type": "text", "text": map[string]string{"content": text[:cut]}})
		text = text[cut:]
	}
	return items
}

// colon is ": msg", or "" when there is no message.
func colon(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}

// notionID returns the ID in s: a Notion ID with or without dashes, or the
// URL of a page, which ends with its ID. Anything else is a
// validation_error for the model, as Notion would answer, but without a
// request whose path s could bend.
func notionID(field, s string) (string, *notionError) {
	t := strings.TrimSpace(s)
	if i := strings.IndexAny(t, "?#"); i >= 0 {
		t = t[:i]
	}
	t = strings.ReplaceAll(strings.TrimSuffix(t, "/"), "-", "")
	if len(t) >= 32 {
		id := strings.ToLower(t[len(t)-32:])
		if strings.Trim(id, "0123456789abcdef") == "" && (len(t) == 32 || strings.Contains(t, "/")) {
			return id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:], nil
		}
	}
	return "", &notionError{Code: "validation_error", Message: fmt.Sprintf("%s should be a Notion ID (a UUID) or a page's URL, instead was %q.", field, s)}
}
