package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runstream"
)

// Announcement lets a model call end its run's first turn itself, a
// workflow task sooner than the workflow could: when the reply ends the turn
// as it is (EndsTurn), CallModel writes Record with the reply added
// (RunRecord.AddReply) and then publishes a runstream.TypeTurnEnded event on
// Subject whose Output is Turn, the turn as the workflow knew it before the
// call, and whose Reply is the reply: the workflows package makes the turn
// from the two as the workflow does. The result says so (Recorded), and the
// workflow then neither writes the row nor announces the turn again. A
// reply that does not end the turn, or a row that could not be written,
// leaves both to the workflow, as without an Announcement.
type Announcement struct {
	Subject string `json:"subject"`
	// EventKey signs the announcement (run.Input.EventKey); empty, it goes
	// unsigned.
	EventKey string `json:"event_key,omitempty"`
	// Record is the run's row as it stands before the call; its
	// RenderedMessages, when nil, are the call's Messages (the first call's
	// are the rendered ones), which the history then holds once.
	Record RunRecord       `json:"record"`
	Turn   json.RawMessage `json:"turn"`
	// Document, set for a prompt with structured output, is the prompt's
	// document: a reply that is not cut off ends the turn only when it
	// passes the document's checks (CheckOutput), with its parsed value;
	// one that fails them is left to the workflow, which repairs it.
	Document json.RawMessage `json:"document,omitempty"`
	// Variables are the run's validated input, which the document's output
	// rules read.
	Variables map[string]any `json:"variables,omitempty"`
}

// firstTurn is a model call that may end its run's first turn itself (see
// Announcement). The reply that first ended the turn stands: an attempt
// after the first may follow one that wrote the run's row and answered the
// caller before its worker died, or one that outlived its timeout and is
// doing so still. Such an attempt returns the row's reply (announcing it
// again, in case the caller missed it) rather than calling the model, or
// rather than failing when its own call fails; an error reading the row is
// retryable.
type firstTurn struct {
	a  *Activities
	an *Announcement
}

func (f firstTurn) call(ctx context.Context, in CallModelInput) (CallModelResult, error) {
	a := f.a
	later := activity.GetInfo(ctx).Attempt > 1
	if later {
		res, found, err := a.recordedReply(ctx, f.an.Record.ID)
		if found {
			f.announce(ctx, res)
		}
		if found || err != nil {
			return res, err
		}
	}
	out, err := a.callModel(ctx, in)
	if err != nil {
		if later {
			if res, found, rerr := a.recordedReply(ctx, f.an.Record.ID); found && rerr == nil {
				return res, nil
			}
		}
		return out, err
	}
	return f.end(ctx, in.Messages, out)
}

// end writes the run's row with the reply and announces the turn, when
// the reply ends it (see Announcement), and returns the reply with Recorded
// set when the row is written. When another attempt of the call wrote the
// row first (it outlived its timeout), that attempt's reply is the run's
// and is returned instead. A row that could not be written leaves the run
// to the workflow; a row that is there but could not be read is a
// retryable error.
func (f firstTurn) end(ctx context.Context, messages []chat.Message, res CallModelResult) (CallModelResult, error) {
	a, an := f.a, f.an
	status, ok := res.EndsTurn()
	if !ok {
		return res, nil
	}
	if an.Document != nil && status == run.StatusCompleted {
		check, err := a.CheckOutput(ctx, CheckOutputInput{Document: an.Document, Content: res.Content, Variables: an.Variables})
		if err != nil || !check.Valid || len(check.Judge) > 0 {
			// The workflow checks it again, and repairs or fails it.
			return res, nil
		}
		res.Parsed = check.Parsed
	}
	rec, err := an.RunRecord(messages, res, status, time.Now())
	if err != nil {
		activity.GetLogger(ctx).Warn("turn not ended by the model call", "run", rec.ID, "err", err)
		return res, nil
	}
	wrote, err := a.writeRun(ctx, rec, true)
	if err != nil {
		activity.GetLogger(ctx).Warn("turn not ended by the model call", "run", rec.ID, "err", err)
		return res, nil
	}
	if !wrote {
		earlier, found, err := a.recordedReply(ctx, rec.ID)
		if found || err != nil {
			return earlier, err
		}
		// The row is there but holds no reply of this call: the workflow
		// records the run itself.
		return res, nil
	}
	res.Recorded = true
	f.announce(ctx, res)
	return res, nil
}

// RunRecord is the run's row once res, the first model call's reply, has
// ended the run with status at now: Record with the reply added
// (RunRecord.AddReply), and messages, the call's, as the rendered ones when
// Record leaves them out.
func (an *Announcement) RunRecord(messages []chat.Message, res CallModelResult, status string, now time.Time) (RunRecord, error) {
	rec := an.Record
	if rec.RenderedMessages == nil {
		rec.RenderedMessages = messages
	}
	err := rec.AddReply(res, status, now)
	return rec, err
}

// announce announces the turn that res, a recorded reply, ended.
func (f firstTurn) announce(ctx context.Context, res CallModelResult) {
	a, an := f.a, f.an
	reply, err := json.Marshal(res)
	if err != nil {
		activity.GetLogger(ctx).Warn("turn end not announced", "run", an.Record.ID, "subject", an.Subject, "err", err)
		return
	}
	a.announce(ctx, an.Record.ID, an.Subject, an.EventKey, runstream.Event{Type: runstream.TypeTurnEnded, Output: an.Turn, Reply: reply})
}

// recordedReply is the reply with which a model call ended the run's first
// turn (see Announcement), if the run's row holds one; err is a failure to
// read the row.
func (a *Activities) recordedReply(ctx context.Context, runID string) (res CallModelResult, found bool, err error) {
	if a.Pool == nil {
		return res, false, errors.New("call model: no database configured")
	}
	row, err := dbsqlc.New(a.Pool).GetRunByID(ctx, runID)
	switch {
	case db.IsNoRows(err):
		return res, false, nil
	case err != nil:
		return res, false, fmt.Errorf("call model: read the run's row: %w", err)
	case row.Status != run.StatusCompleted && row.Status != run.StatusIncomplete:
		return res, false, nil
	}
	var calls []ModelCall
	var out RunOutput
	if json.Unmarshal(row.ModelCalls, &calls) != nil || len(calls) != 1 || json.Unmarshal(row.Output, &out) != nil {
		return res, false, nil
	}
	c := calls[0]
	return CallModelResult{
		Content: out.Text, FinishReason: c.FinishReason, Usage: c.Usage, LatencyMS: c.LatencyMS,
		Model: c.Model, UpstreamModel: c.UpstreamModel, Attempt: c.Attempt, Recorded: true, Parsed: out.Parsed,
		Strict: c.Strict, StrictReason: c.StrictReason,
	}, true, nil
}
