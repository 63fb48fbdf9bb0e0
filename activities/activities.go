// Package activities holds BudPrompt's Temporal activities: every step of a
// prompt run that touches the network, the clock, randomness or the
// database. Activities are methods on Activities, which carries their
// dependencies; workflows refer to them through a nil *Activities.
package activities

import (
	"context"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.temporal.io/sdk/activity"

	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/egress"
	"github.com/budhq/bud/evaluation"
	"github.com/budhq/bud/secrets"
)

// Config holds what New needs.
type Config struct {
	// Identity names the worker process in activity results.
	Identity string
	// Pool is the BudApp database: deployments are read and runs recorded
	// there.
	Pool *pgxpool.Pool
	// Box opens the provider keys of model deployments.
	Box *secrets.Box
	// HTTPClient calls model deployments; nil means a client of its own
	// whose dials Egress checks. It must not retry: the workflow's retry
	// policy does.
	HTTPClient *http.Client
	// Egress says which addresses the client of its own may dial; nil
	// refuses only link-local and cloud metadata addresses.
	Egress *egress.Policy
	// Deployments resolves model deployments; run a changes.Listener with
	// it so that a changed deployment is seen at once. nil means a cache of
	// its own over Pool and Box, which no notification reaches: entries
	// then last deployment.DefaultTTL.
	Deployments *deployment.Cache
	// Tools runs connection tools; nil means a run with connection tools
	// fails its tool steps.
	Tools ToolExecutor
	// NATS carries a streaming run's deltas to the gateway; nil means a
	// streaming call still streams from the model but publishes nothing.
	NATS *nats.Conn
	// Admitter holds model deployments to their rate limits and
	// concurrency; give the one the gateway of the same process uses, so
	// that both count against one state. nil means one of its own, in
	// this process.
	Admitter *admission.Admitter
}

// Activities holds what activities need. Construct one per worker with New;
// a literal with only Identity set serves Echo.
type Activities struct {
	// Identity names the worker process in activity results, so a caller
	// can tell which worker did the work.
	Identity   string
	Pool       *pgxpool.Pool
	HTTPClient *http.Client
	Tools      ToolExecutor
	NATS       *nats.Conn

	deployments *deployment.Cache
	admitter    *admission.Admitter
	documents   documentCache
	// checks compiles evaluations' checks, sharing one CEL environment.
	checks evaluation.Compiler
}

// New returns Activities with the given dependencies.
func New(c Config) *Activities {
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: c.Egress.Transport()}
	}
	a := &Activities{Identity: c.Identity, Pool: c.Pool, HTTPClient: hc, Tools: c.Tools, NATS: c.NATS, deployments: c.Deployments, admitter: c.Admitter}
	if a.admitter == nil {
		a.admitter = admission.New(admission.Config{})
	}
	if a.deployments == nil && c.Pool != nil {
		a.deployments = deployment.NewCache(deployment.Config{Pool: c.Pool, Box: c.Box})
	}
	return a
}

// EchoInput is the input of Echo.
type EchoInput struct {
	Message string
}

// EchoOutput is the result of Echo.
type EchoOutput struct {
	Message  string
	Worker   string
	Attempt  int32
	Workflow string
}

// Echo returns its input with the worker's identity. It proves the worker's
// wiring end to end: a workflow scheduled it, this process ran it.
func (a *Activities) Echo(ctx context.Context, in EchoInput) (EchoOutput, error) {
	if in.Message == "" {
		return EchoOutput{}, fmt.Errorf("echo: empty message")
	}
	info := activity.GetInfo(ctx)
	return EchoOutput{Message: in.Message, Worker: a.Identity, Attempt: info.Attempt, Workflow: info.WorkflowExecution.ID}, nil
}
