package workflows_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/workflows"
)

// TestEvaluationOfAVanishedDatasetFails: a dataset that no longer has the
// rows the evaluation started with (deleted with its project) ends the
// evaluation failed, recorded so, instead of continuing as new to read the
// same empty page again.
func TestEvaluationOfAVanishedDatasetFails(t *testing.T) {
	env := newTestEnv()
	workflows.Register(env, &activities.Activities{})
	env.OnActivity("ReadEvaluationRows", mock.Anything, mock.Anything).Return([]activities.EvaluationRow{}, nil)
	var finished []string
	env.OnActivity("FinishEvaluation", mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.FinishEvaluationInput) error {
		finished = append(finished, in.Status)
		return nil
	})

	env.ExecuteWorkflow(workflows.Evaluation, workflows.EvaluationInput{
		EvaluationID: uuid.New(), ProjectID: uuid.New(), DatasetID: uuid.New(), Rows: 3,
		Candidates: []workflows.EvaluationCandidate{{Document: []byte(`{}`)}}, Parallelism: 2,
	})

	require.True(t, env.IsWorkflowCompleted())
	require.ErrorContains(t, env.GetWorkflowError(), "has no row 0")
	require.Equal(t, []string{workflows.EvaluationFailed}, finished)
}
