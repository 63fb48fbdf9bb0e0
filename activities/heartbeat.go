package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
)

// heartbeatEvery is well inside the workflow's heartbeat timeout (10 s),
// and as often as the worker sends heartbeats (workflows.HeartbeatThrottle),
// so that the answer to one tells a cancelled call within that time.
const heartbeatEvery = 300 * time.Millisecond

// keepAlive heartbeats until the returned stop is called, so the server
// notices a dead worker within the heartbeat timeout instead of waiting out
// the whole call timeout. Outside an activity (unit tests calling the
// method directly) it does nothing.
func keepAlive(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}
