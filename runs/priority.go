package runs

import (
	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"

	"github.com/budhq/bud/run"
)

// MaxFairnessWeight is the largest weight Temporal gives a fairness key;
// it clamps larger ones to it.
const MaxFairnessWeight = 1000

// Prefixes of the fairness keys, which the Temporal UI shows on every
// task: each says whose share a run's tasks draw on.
const (
	FairnessKeyDeployment = "deployment:" // + the prompt deployment's id
	FairnessKeyProject    = "project:"    // + the project's id: its playground runs and replays
	FairnessKeyEvaluation = "evaluation:" // + the evaluation's id: its runs
)

// Priority is the task priority a run of in starts with. Every run's
// workflow and activity tasks carry a fairness key, and when tasks wait
// for the workers — more runs than slots — the server hands them out in
// turn between the keys in proportion to their weights, instead of first
// come first served. So a flooded deployment's backlog makes only its own
// runs wait: another deployment's run goes ahead of that backlog.
//
// A prompt deployment's runs draw on a share of their own, weighted by its
// min_concurrency (at least 1, the weight of every other key): while the
// weights of the deployments with runs waiting add up to no more than the
// workers' slots, each gets at least min_concurrency of them. Other runs
// of a project (playground, replays) share one key per project.
func Priority(in run.Input) temporal.Priority {
	if in.DeploymentID != uuid.Nil {
		return temporal.Priority{
			FairnessKey:    FairnessKeyDeployment + in.DeploymentID.String(),
			FairnessWeight: FairnessWeight(in.MinConcurrency),
		}
	}
	return temporal.Priority{FairnessKey: FairnessKeyProject + in.ProjectID.String()}
}

// EvaluationPriority is the task priority of the evaluation id: its runs,
// child workflows, inherit it, so that an evaluation's many runs share
// one weight-1 key rather than crowd out the deployments' runs.
func EvaluationPriority(id uuid.UUID) temporal.Priority {
	return temporal.Priority{FairnessKey: FairnessKeyEvaluation + id.String()}
}

// FairnessWeight is the weight of a deployment whose min_concurrency is
// minConcurrency: itself, between 1 and MaxFairnessWeight.
func FairnessWeight(minConcurrency int) float32 {
	return float32(min(max(minConcurrency, 1), MaxFairnessWeight))
}
