package activities

import (
	"context"

	"go.temporal.io/sdk/activity"

	"github.com/budhq/bud/runstream"
)

// PublishRunEventInput is one of a streaming run's own events, such as the
// verdict on a structured reply.
type PublishRunEventInput struct {
	Subject string `json:"subject"`
	// EventKey signs the event (run.Input.EventKey); empty, it goes
	// unsigned.
	EventKey string          `json:"event_key,omitempty"`
	Event    runstream.Event `json:"event"`
}

// PublishRunEvent publishes a streaming run's event on its subject. The
// stream is best effort: a failure is logged and the activity succeeds, so
// it never fails a run or holds it up beyond a short flush timeout.
func (a *Activities) PublishRunEvent(ctx context.Context, in PublishRunEventInput) error {
	if err := runstream.Publish(ctx, a.NATS, in.Subject, in.EventKey, in.Event); err != nil {
		activity.GetLogger(ctx).Warn("run event not published", "subject", in.Subject, "type", in.Event.Type, "err", err)
	}
	return nil
}
