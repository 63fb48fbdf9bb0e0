package admission

import (
	"time"

	"github.com/budhq/bud"
)

// DeploymentLimits is what admission enforces of a deployment's settings:
// its rate limit when enabled, and its concurrency with the wait for a
// slot.
func DeploymentLimits(s bud.Settings) Limits {
	l := Limits{MaxConcurrency: s.MaxConcurrency, QueueTimeout: time.Duration(s.QueueTimeoutMS) * time.Millisecond}
	if s.RateLimit.Enabled {
		l.Rate = Rate{RequestsPerMinute: s.RateLimit.RequestsPerMinute, Burst: s.RateLimit.Burst, TokensPerMinute: s.RateLimit.TokensPerMinute}
	}
	return l
}
