package workflows

import (
	"fmt"
	"slices"

	"go.temporal.io/sdk/workflow"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/chat"
	"github.com/budhq/bud/customrule"
	"github.com/budhq/bud/prompt"
)

// TranslateRules translates each rule of in into CEL with the project's
// model deployment: the model answers (CallModel, an activity, retried as
// a run's calls are), Bud checks the answer (CheckRuleTranslation), and a
// failed check goes back to the model with its problem, up to
// customrule.MaxTries answers. Rules are translated side by side. A rule
// that cannot be translated is a result with its problem; the workflow
// fails only when the model deployment cannot be called.
func TranslateRules(ctx workflow.Context, in customrule.Request) (customrule.Result, error) {
	out := customrule.Result{Rules: make([]customrule.RuleResult, len(in.Rules))}
	errs := make([]error, len(in.Rules))
	wg := workflow.NewWaitGroup(ctx)
	for i, r := range in.Rules {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			out.Rules[i], errs[i] = translateRule(ctx, in, r)
		})
	}
	wg.Wait(ctx)
	for i, err := range errs {
		if err != nil {
			return customrule.Result{}, fmt.Errorf("translate rules: %s: %w", in.Rules[i].Path, err)
		}
	}
	return out, nil
}

func translateRule(ctx workflow.Context, in customrule.Request, r customrule.RuleRequest) (customrule.RuleResult, error) {
	var a *activities.Activities
	res := customrule.RuleResult{Path: r.Path}
	msgs := customrule.Messages(r)
	lctx := localOptions(ctx)
	for res.Tries < customrule.MaxTries {
		var reply activities.CallModelResult
		err := modelCalls{}.call(ctx, activities.CallModelInput{
			ProjectID:      in.ProjectID,
			Deployment:     in.Deployment,
			Messages:       msgs,
			ModelParams:    []byte(`{"temperature": 0}`),
			ResponseFormat: customrule.ResponseFormat(),
		}).Get(ctx, &reply)
		if err != nil {
			if runErr, ok := callError(err, in.Deployment); ok {
				res.Problem = runErr.Message
				return res, nil
			}
			return res, err
		}
		res.Tries++
		var checked customrule.Checked
		if err := workflow.ExecuteLocalActivity(lctx, a.CheckRuleTranslation, activities.CheckRuleInput{Rule: r, Content: reply.Content}).Get(lctx, &checked); err != nil {
			return res, err
		}
		res.Verdicts, res.Problem = checked.Verdicts, checked.Problem
		if checked.Problem == "" {
			res.Translation = &prompt.Translation{
				Rule: r.Rule, Expression: checked.Expression, Examples: checked.Examples,
				Deployment: in.Deployment, TranslatedAt: workflow.Now(ctx).UTC(),
			}
			return res, nil
		}
		msgs = append(slices.Clip(msgs),
			chat.Message{Role: "assistant", Content: reply.Content},
			chat.Message{Role: "user", Content: customrule.Retry(checked.Problem)})
	}
	return res, nil
}
