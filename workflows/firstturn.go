package workflows

// The first turn's announcement: the first model call may end the run
// itself, a workflow task before the workflow could.

import (
	"encoding/json"
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runstream"
)

// AnnouncedTurn is the turn a runstream.TypeTurnEnded event announces, if
// ev is a readable announcement: the turn itself, as RecordRun sends it, or
// the turn before the first model call with the call's reply, as the call
// sends it when its reply ended the turn (activities.Announcement), made
// into the turn as the workflow makes it then (but for FinishedAt: the
// turn's start plus the call's latency, a little before the workflow's).
func AnnouncedTurn(ev runstream.Event) (run.Turn, bool) {
	var out run.Turn
	if ev.Type != runstream.TypeTurnEnded || json.Unmarshal(ev.Output, &out) != nil {
		return out, false
	}
	if ev.Reply == nil {
		return out, true
	}
	var res activities.CallModelResult
	if json.Unmarshal(ev.Reply, &res) != nil {
		return run.Turn{}, false
	}
	status, ends := res.EndsTurn()
	if !ends {
		return run.Turn{}, false
	}
	res.AddTo(&out)
	out.Parsed = res.Parsed
	out.Status = status
	out.FinishedAt = out.StartedAt.Add(time.Duration(res.LatencyMS) * time.Millisecond)
	return out, true
}

// firstTurn is the announcement for model call n when it is the run's
// first and a caller waits on the first turn's announcement; nil for any
// other call, and when the fast path is built out (firstCallEndsTurn).
func (r *promptRun) firstTurn(ctx workflow.Context, n int) (*activities.Announcement, error) {
	if !firstCallEndsTurn || n != 1 || len(r.turns) != 0 || r.in.TurnSubject == "" {
		return nil, nil
	}
	return r.announcement(ctx, r.prep.StructuredOutput)
}

// announcement lets the first model call end the first turn (see
// activities.Announcement): the row and the turn as they stand before it,
// and for a structured output the document to check the reply against;
// nil when the run's input and document are too large to carry again.
func (r *promptRun) announcement(ctx workflow.Context, structured bool) (*activities.Announcement, error) {
	rec, err := r.runRecord(ctx, "")
	if err != nil {
		return nil, err
	}
	// The first call's messages are the rendered ones: the history holds
	// them once.
	rec.RenderedMessages = nil
	turn, err := json.Marshal(r.cur)
	if err != nil {
		return nil, fmt.Errorf("prompt run: encode turn: %w", err)
	}
	an := &activities.Announcement{Subject: r.in.TurnSubject, EventKey: r.in.EventKey, Record: rec, Turn: turn}
	if structured {
		an.Document, an.Variables = r.in.Document, r.prep.Variables
	}
	encoded, err := json.Marshal(an)
	if err != nil {
		return nil, fmt.Errorf("prompt run: encode announcement: %w", err)
	}
	if len(encoded) > maxAnnouncement {
		return nil, nil
	}
	return an, nil
}
