package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/budhq/bud/runs"
)

// findResponse finds the run of the caller's project that the URL's id
// names, answering 404 (or 500) itself when there is none.
func (g *Gateway) findResponse(w http.ResponseWriter, r *http.Request) (runs.Run, bool) {
	c := callerFrom(r.Context())
	id := chi.URLParam(r, "id")
	if g.cfg.Runs == nil {
		writeAPIError(w, errResponseNotFound("", id))
		return runs.Run{}, false
	}
	found, err := g.cfg.Runs.Find(r.Context(), c.projectID, id)
	switch {
	case errors.Is(err, runs.ErrNotFound), errors.Is(err, runs.ErrNotResponseID):
		writeAPIError(w, errResponseNotFound("", id))
		return runs.Run{}, false
	case err != nil:
		g.log.Error("read prompt run", "err", err, "response_id", id)
		writeAPIError(w, errInternal())
		return runs.Run{}, false
	}
	return found, true
}

// deleteResponse deletes the run a response belongs to (DELETE
// /v1/responses/{id}): its row in the runs table, with its input, output
// and tool calls, and its workflow history in Temporal, so that every turn
// of the run is gone. A run still running is refused (cancel it first, or
// wait): its worker would record it again.
func (g *Gateway) deleteResponse(w http.ResponseWriter, r *http.Request) {
	found, ok := g.findResponse(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	_, running, err := g.cfg.Runs.Running(r.Context(), found.ID)
	if err != nil {
		g.log.Error("describe prompt run", "err", err, "response_id", id)
		writeAPIError(w, errInternal())
		return
	}
	if running {
		writeAPIError(w, errInvalid("", codeInvalidValue, fmt.Sprintf("Response '%s' belongs to a run still running: cancel it (a background response) or let it end, then delete it.", id)))
		return
	}
	if _, err := g.cfg.Pool.Exec(r.Context(), `DELETE FROM runs WHERE id = $1 AND project_id = $2`, found.ID, callerFrom(r.Context()).projectID); err != nil {
		g.log.Error("delete run", "err", err, "response_id", id)
		writeAPIError(w, errInternal())
		return
	}
	if err := g.cfg.Runs.Delete(r.Context(), found.ID); err != nil && !errors.Is(err, runs.ErrNotFound) {
		g.log.Error("delete run history", "err", err, "response_id", id)
		writeAPIError(w, errInternal())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "response", "deleted": true})
}

// inputItemList is OpenAI's list of a response's input items.
type inputItemList struct {
	Object  string           `json:"object"`
	Data    []map[string]any `json:"data"`
	FirstID *string          `json:"first_id"`
	LastID  *string          `json:"last_id"`
	HasMore bool             `json:"has_more"`
}

// inputItems lists the input items of a response (GET
// /v1/responses/{id}/input_items) in OpenAI's list format: for a first
// turn its text input (as a user message) and input items, for a later
// turn the items its continue sent. An item without an id gets one
// derived from the response id and its place. `order` is desc (the
// default, the last item first) or asc, `limit` 1 to 100 (default 20),
// `after` the id of the item to list after.
func (g *Gateway) inputItems(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 20
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			writeAPIError(w, errInvalid("limit", codeInvalidValue, "limit must be an integer from 1 to 100."))
			return
		}
		limit = n
	}
	order := q.Get("order")
	switch order {
	case "":
		order = "desc"
	case "asc", "desc":
	default:
		writeAPIError(w, errInvalid("order", codeInvalidValue, "order must be 'asc' or 'desc'."))
		return
	}
	found, ok := g.findResponse(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	var text string
	var raw json.RawMessage
	if found.Turn == 1 {
		text, raw = found.Input.Text, found.Input.InputItems
	} else {
		cs, err := g.cfg.Runs.Continues(r.Context(), found.ID)
		if err != nil && !errors.Is(err, runs.ErrNotFound) {
			g.log.Error("read continues of prompt run", "err", err, "response_id", id)
			writeAPIError(w, errInternal())
			return
		}
		if found.Turn-2 >= len(cs) {
			writeAPIError(w, errResponseNotFound("", id))
			return
		}
		raw = cs[found.Turn-2].InputItems
	}
	items, err := listItems(id, text, raw)
	if err != nil {
		g.log.Error("read input items", "err", err, "response_id", id)
		writeAPIError(w, errInternal())
		return
	}
	if order == "desc" {
		for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
			items[i], items[j] = items[j], items[i]
		}
	}
	if after := q.Get("after"); after != "" {
		at := -1
		for i, it := range items {
			if it["id"] == after {
				at = i
				break
			}
		}
		if at < 0 {
			writeAPIError(w, errInvalid("after", codeInvalidValue, fmt.Sprintf("No input item '%s' in response '%s'.", after, id)))
			return
		}
		items = items[at+1:]
	}
	list := inputItemList{Object: "list", Data: items}
	if len(items) > limit {
		list.Data, list.HasMore = items[:limit], true
	}
	if n := len(list.Data); n > 0 {
		first, last := list.Data[0]["id"].(string), list.Data[n-1]["id"].(string)
		list.FirstID, list.LastID = &first, &last
	}
	if list.Data == nil {
		list.Data = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, list)
}

// listItems is a turn's input as OpenAI's input items, in the order sent:
// the text as a user message, then the items.
func listItems(responseID, text string, raw json.RawMessage) ([]map[string]any, error) {
	suffix := strings.TrimPrefix(responseID, "resp_")
	var items []map[string]any
	if text != "" {
		items = append(items, map[string]any{
			"type": "message", "id": "msg_in_" + suffix, "role": "user", "status": "completed",
			"content": []any{map[string]any{"type": "input_text", "text": text}},
		})
	}
	if len(raw) > 0 && string(raw) != "null" {
		var sent []map[string]any
		if err := json.Unmarshal(raw, &sent); err != nil {
			return nil, fmt.Errorf("input items: %w", err)
		}
		for i, it := range sent {
			if s, _ := it["id"].(string); s == "" {
				it["id"] = "item_" + suffix + "_" + strconv.Itoa(i+1)
			}
			if it["type"] == nil {
				it["type"] = "message"
			}
			items = append(items, it)
		}
	}
	return items, nil
}
