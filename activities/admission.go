package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/run"
)

// Bounds of a model call's wait for admission.
const (
	// admissionWait is how long one attempt of a model call waits, in
	// turns, for the deployment's rate limit or a concurrency slot before
	// it gives up and lets the workflow retry it later.
	admissionWait = 30 * time.Second
	// admissionPause is the shortest pause between two tries; a refusal's
	// own Retry-After is waited when longer.
	admissionPause = 50 * time.Millisecond
)

// admitCall waits until the model deployment d admits one more call: its
// rate limit and its concurrency bound every call to it, from the
// gateway's chat completions and from every run (gateway, playground,
// replay, evaluation) alike. A run's call is never refused outright as a
// caller's request is: it waits its turn, up to admissionWait, and then
// fails retryably (run.RateLimited) with the delay the limit asks for, so
// that the workflow's retry policy tries it again later. The ticket it
// returns must be ended with Done.
func (a *Activities) admitCall(ctx context.Context, d *deployment.Deployment) (*admission.Ticket, error) {
	if a.admitter == nil {
		// Activities made without New (tests of other steps) admit all.
		return nil, nil
	}
	req := admission.Request{DeploymentID: d.ID, Deployment: admission.DeploymentLimits(d.Settings)}
	deadline := time.Now().Add(admissionWait)
	for {
		t, err := a.admitter.Admit(ctx, req)
		refused, ok := errors.AsType[*admission.Refused](err)
		switch {
		case err == nil:
			return t, nil
		case !ok:
			return nil, fmt.Errorf("call model: wait for admission: %w", err)
		}
		pause := max(refused.RetryAfter, admissionPause)
		if time.Now().Add(pause).After(deadline) {
			return nil, temporal.NewApplicationErrorWithOptions(
				fmt.Sprintf("call model: deployment %q: %s", d.Name, refused.Error()), run.RateLimited,
				temporal.ApplicationErrorOptions{
					Details:        []any{run.Failure{Message: fmt.Sprintf("model deployment %q stayed at its limit: %s", d.Name, refused.Error())}},
					NextRetryDelay: pause,
				})
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
}
