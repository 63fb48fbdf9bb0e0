package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/workflows"
)

// Defaults of firstTurn.
const (
	// defaultAnnounceWait is how long the gateway waits for a run to
	// announce the end of its first turn before it asks with an update,
	// which always answers: the announcement travels over NATS, at most
	// once.
	defaultAnnounceWait = 2 * time.Second
	// settleWait bounds how long a read of a first turn that its model
	// call has already ended waits for the workflow to learn so.
	settleWait = time.Second
	// settlePoll is how often the workflow is asked meanwhile.
	settlePoll = 5 * time.Millisecond
)

// firstTurn is the gateway's side of a run's first turn, which may end in
// its first model call, before the workflow has heard of the reply (see
// activities.Announcement): the run then announces the end on NATS, and
// the gateway answers from the announcement, or from an update when none
// comes in time; a read right after the answer is made to agree with it.
type firstTurn struct {
	nats *nats.Conn // nil: no announcements, runs are awaited by update alone
	runs *runs.Client
	q    *dbsqlc.Queries
	log  *slog.Logger
	// announceWait is how long await waits for the announcement before it
	// asks with an update.
	announceWait time.Duration
}

// subscribe subscribes to the announcement of the end of the first turn of
// the run in and sets the run's TurnSubject and the EventKey that the
// announcement must be signed with. Without NATS, or when the run starts
// with its update (which answers as soon as the turn ends), it returns nil
// and the turn is awaited with the update alone.
func (f *firstTurn) subscribe(in *run.Input) *runstream.Subscription {
	if f.nats == nil || f.runs.WaitsByUpdate() {
		return nil
	}
	key := runstream.NewEventKey()
	sub, err := runstream.Subscribe(f.nats, in.ResponseID, key)
	if err != nil {
		f.log.Warn("subscribe to run announcements", "err", err, "response_id", in.ResponseID)
		return nil
	}
	in.TurnSubject, in.EventKey = runstream.Subject(in.ResponseID), key
	return sub
}

// await returns the first turn's output as the run announces it on sub, or
// as wait (an update) gives it: wait is asked when no announcement came
// within announceWait, and whichever answers first wins. A nil sub leaves
// the answer to wait.
func (f *firstTurn) await(ctx context.Context, sub *runstream.Subscription, wait runs.Wait) (run.Turn, error) {
	if sub == nil {
		return wait()
	}
	asked, stop := askAfter(f.announceWait, wait)
	defer stop()
	for {
		select {
		case ev := <-sub.Events():
			if out, ok := workflows.AnnouncedTurn(ev); ok {
				return out, nil
			}
		case res := <-asked:
			return res.out, res.err
		case <-ctx.Done():
			return run.Turn{}, ctx.Err()
		}
	}
}

// settled is the first turn of run runID, which the workflow reports as
// out, in progress. When the run's row says the turn has ended (its first
// model call ended it and answered the caller before the workflow had the
// reply), the workflow reports so within moments: it is asked again until
// it does, for up to settleWait, so that a read right after the answer
// agrees with it.
func (f *firstTurn) settled(ctx context.Context, project uuid.UUID, runID string, out run.Turn) (run.Turn, error) {
	row, err := f.q.GetRun(ctx, dbsqlc.GetRunParams{ProjectID: project, ID: runID})
	switch {
	case db.IsNoRows(err):
		return out, nil
	case err != nil:
		return out, fmt.Errorf("read run: %w", err)
	case row.Status == run.StatusWaiting:
		return out, nil
	}
	deadline := time.Now().Add(settleWait)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(settlePoll):
		}
		later, found, err := f.runs.Turn(ctx, runID, 1)
		switch {
		case err != nil:
			return out, err
		case found && later.Status != run.StatusInProgress:
			return later, nil
		}
	}
	return out, nil
}

// turnResult is a turn's output as an update gives it.
type turnResult struct {
	out run.Turn
	err error
}

// askAfter calls wait in the background after delay (at once for 0) and
// delivers its answer; stop cancels a call not yet made.
func askAfter(delay time.Duration, wait runs.Wait) (answer <-chan turnResult, stop func()) {
	ch := make(chan turnResult, 1)
	t := time.AfterFunc(delay, func() {
		var res turnResult
		res.out, res.err = wait()
		ch <- res
	})
	return ch, func() { t.Stop() }
}
