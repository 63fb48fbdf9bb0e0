package workflows

// Streaming: the run's own events for a caller that watches the turn.

import (
	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/runstream"
)

// streaming reports whether a caller watches the current turn's stream.
func (r *promptRun) streaming() bool { return r.subject != "" }

// publish sends one of the run's own events to a streaming caller (see
// package runstream): the verdict on a structured reply, which tells the
// gateway whether the text it holds is the output or will be repaired, and
// the tool events. A run that does not stream publishes nothing, so its
// history holds no publishing steps. Streaming is best effort: a failure to
// publish does not fail the run.
func (r *promptRun) publish(ctx workflow.Context, ev runstream.Event) {
	if !r.streaming() {
		return
	}
	var a *activities.Activities
	lctx := localOptions(ctx)
	err := workflow.ExecuteLocalActivity(lctx, a.PublishRunEvent, activities.PublishRunEventInput{Subject: r.subject, EventKey: r.eventKey, Event: ev}).Get(lctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Warn("run event not published", "type", ev.Type, "err", err)
	}
}

// toolEvent publishes a tool event of model call n.
func (r *promptRun) toolEvent(ctx workflow.Context, n int, typ string, t *runstream.Tool) {
	r.publish(ctx, runstream.Event{Type: typ, Call: n, Tool: t})
}
