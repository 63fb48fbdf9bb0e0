package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/response"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
)

// continueEnded continues a response whose run has ended: a new run of the
// same prompt version, input and instructions, linked to it
// (run.Input.Continues), whose input items are the ended run's
// conversation up to that response, then the caller's new items.
func (g *Gateway) continueEnded(w http.ResponseWriter, r *http.Request, found runs.Run, items json.RawMessage, ticket *admission.Ticket, u *served) {
	prev := run.TurnID(found.ID, found.Turn)
	conv, err := g.conversation(r, found)
	if err != nil {
		g.log.Error("read conversation of prompt run", "err", err, "response_id", prev)
		writeAPIError(w, errInternal())
		return
	}
	var added []json.RawMessage
	if err := json.Unmarshal(items, &added); err != nil {
		writeAPIError(w, errInputType())
		return
	}
	all, _ := json.Marshal(append(conv, added...)) // raw messages always encode
	in := found.Input
	in.ResponseID, in.Continues, in.InputItems = response.NewID(), prev, all
	in.Background, in.StreamSubject, in.TurnSubject, in.EventKey = false, "", "", ""
	in.ReplayOf, in.ReplayTools, in.Source = "", "", run.SourceAPI
	v := g.versionOf(in)
	wait, err := g.cfg.Runs.Start(r.Context(), in, runs.Completed)
	var out run.Turn
	if err == nil {
		out, err = wait()
	}
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		g.log.Error("prompt run failed", "err", err, "response_id", in.ResponseID)
		out = run.Turn{Status: run.StatusFailed, Error: runs.ServerFailure(in.ResponseID)}
	}
	ticket.Done(turnTokens(out))
	u.turn(out)
	writeTurn(w, in, v, out, time.Now())
}

// conversation is the ended run's conversation up to found.Turn as input
// items: its first input items, then for each turn its output (the
// assistant's text, its function calls) and the items of the continue
// that started the next.
func (g *Gateway) conversation(r *http.Request, found runs.Run) ([]json.RawMessage, error) {
	var conv []json.RawMessage
	add := func(raw json.RawMessage) error {
		if len(raw) == 0 || string(raw) == "null" {
			return nil
		}
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return err
		}
		conv = append(conv, list...)
		return nil
	}
	if found.Input.Text != "" {
		b, _ := json.Marshal(map[string]any{"type": "message", "role": "user", "content": found.Input.Text})
		conv = append(conv, b)
	}
	if err := add(found.Input.InputItems); err != nil {
		return nil, err
	}
	var cs []run.ContinueInput
	if found.Turn > 1 {
		var err error
		if cs, err = g.cfg.Runs.Continues(r.Context(), found.ID); err != nil {
			return nil, err
		}
	}
	for k := 1; k <= found.Turn; k++ {
		t, ok, err := g.cfg.Runs.Turn(r.Context(), found.ID, k)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errors.New("turn not found")
		}
		// A turn that failed or was cancelled before any text adds nothing.
		if t.Text != "" {
			b, _ := json.Marshal(map[string]any{"type": "message", "role": "assistant", "content": t.Text})
			conv = append(conv, b)
		}
		for _, fc := range t.FunctionCalls {
			b, _ := json.Marshal(map[string]any{"type": "function_call", "call_id": fc.CallID, "name": fc.Name, "arguments": fc.Arguments})
			conv = append(conv, b)
		}
		if k < found.Turn && k-1 < len(cs) {
			if err := add(cs[k-1].InputItems); err != nil {
				return nil, err
			}
		}
	}
	return conv, nil
}
