package runs

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/budhq/bud/run"
)

// Names of the custom search attributes of a prompt run.
const (
	SearchAttributeProjectID     = "BudProjectId"     // Keyword: the project's UUID
	SearchAttributePromptID      = "BudPromptId"      // Keyword: the prompt's UUID; unset in the playground
	SearchAttributePromptVersion = "BudPromptVersion" // Int: the version run; unset in the playground
	SearchAttributeDeployment    = "BudDeployment"    // Keyword: the prompt deployment named; unset in the playground
	SearchAttributeReplayOf      = "BudReplayOf"      // Keyword: the run a replay replays; unset for other runs
)

// Typed keys of the search attributes, for
// client.StartWorkflowOptions.TypedSearchAttributes and for queries.
var (
	ProjectIDKey     = temporal.NewSearchAttributeKeyKeyword(SearchAttributeProjectID)
	PromptIDKey      = temporal.NewSearchAttributeKeyKeyword(SearchAttributePromptID)
	PromptVersionKey = temporal.NewSearchAttributeKeyInt64(SearchAttributePromptVersion)
	DeploymentKey    = temporal.NewSearchAttributeKeyKeyword(SearchAttributeDeployment)
	ReplayOfKey      = temporal.NewSearchAttributeKeyKeyword(SearchAttributeReplayOf)
)

// SearchAttributes are the custom search attributes a namespace needs for
// prompt runs, by name: a new map on every call.
func SearchAttributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		SearchAttributeProjectID:     enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttributePromptID:      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttributePromptVersion: enumspb.INDEXED_VALUE_TYPE_INT,
		SearchAttributeDeployment:    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttributeReplayOf:      enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	}
}

// RegisterSearchAttributes adds the SearchAttributes the namespace lacks,
// through the operator service. It is idempotent and safe to run from
// several processes at once; it fails when an attribute exists with another
// type. A server may take a few seconds (its namespace cache refresh) to
// accept runs that set attributes it has just added.
func RegisterSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	list, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("register search attributes: list: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, want := range SearchAttributes() {
		have, ok := list.GetCustomAttributes()[name]
		if !ok {
			missing[name] = want
			continue
		}
		if have != want {
			return fmt.Errorf("register search attributes: %s is a %s attribute in namespace %q, not %s", name, have, namespace, want)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	})
	var exists *serviceerror.AlreadyExists
	if err != nil && !errors.As(err, &exists) { // AlreadyExists: a concurrent caller won
		return fmt.Errorf("register search attributes: add: %w", err)
	}
	return nil
}

// RunSearchAttributes are the search attributes of a run of in. Those a
// playground run lacks (prompt, version, deployment), and the replayed run
// of a run that is no replay, are left unset.
func RunSearchAttributes(in run.Input) temporal.SearchAttributes {
	updates := []temporal.SearchAttributeUpdate{ProjectIDKey.ValueSet(in.ProjectID.String())}
	if in.PromptID != uuid.Nil {
		updates = append(updates, PromptIDKey.ValueSet(in.PromptID.String()))
	}
	if in.PromptVersion != 0 {
		updates = append(updates, PromptVersionKey.ValueSet(int64(in.PromptVersion)))
	}
	if in.Deployment != "" {
		updates = append(updates, DeploymentKey.ValueSet(in.Deployment))
	}
	if in.ReplayOf != "" {
		updates = append(updates, ReplayOfKey.ValueSet(in.ReplayOf))
	}
	return temporal.NewSearchAttributes(updates...)
}

// Summary is the one line the Temporal UI shows for a run of in, in its
// list and on its page: what ran and how it started, e.g. "prompt
// greeter v3 · gateway", "unsaved document · playground", "prompt
// 0b5f…e1 v2 · evaluation", "… · replay of resp_…".
func Summary(in run.Input) string {
	var what string
	switch {
	case in.Deployment != "":
		what = "prompt " + in.Deployment
	case in.PromptID != uuid.Nil:
		id := in.PromptID.String()
		what = "prompt " + id[:4] + "…" + id[len(id)-2:]
	default:
		what = "unsaved document"
	}
	if in.PromptVersion > 0 {
		what += " v" + strconv.Itoa(int(in.PromptVersion))
	}
	how := in.Source
	switch how {
	case run.SourceAPI:
		how = "gateway"
	case "":
		how = "run"
	}
	if in.ReplayOf != "" {
		how = "replay of " + in.ReplayOf
	}
	if in.Continues != "" {
		how += ", continues " + in.Continues
	}
	if in.Background {
		how += ", background"
	}
	return what + " · " + how
}

// StartOptions are the options to start a run of in with: the response
// id as workflow id (a second start with the same id is refused, even after
// the first run ended), run.TaskQueue, RunSearchAttributes, and the
// task Priority (fairness) of its deployment. Start with
// client.ExecuteWorkflow(ctx, StartOptions(in), run.WorkflowName, in).
func StartOptions(in run.Input) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                    in.ResponseID,
		TaskQueue:             run.TaskQueue,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		TypedSearchAttributes: RunSearchAttributes(in),
		StaticSummary:         Summary(in),
		Priority:              Priority(in),
		// When a worker shares the starter's client (bud dev), the first
		// workflow task runs on it at once instead of going through a poll;
		// elsewhere the server ignores the request.
		EnableEagerStart: true,
	}
}
