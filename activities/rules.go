package activities

import (
	"context"

	"github.com/budhq/bud/customrule"
)

// CheckRuleInput is a model's answer to a rule's translation.
type CheckRuleInput struct {
	Rule    customrule.RuleRequest `json:"rule"`
	Content string                 `json:"content"`
}

// CheckRuleTranslation judges a model's answer to a rule's translation
// (customrule.Check): it compiles the expression as CEL and runs it on the
// answer's examples, within celrule's limits. A failed check is a result;
// it never errs. It is pure computation, run as a local activity.
func (a *Activities) CheckRuleTranslation(ctx context.Context, in CheckRuleInput) (customrule.Checked, error) {
	return customrule.Check(in.Content, in.Rule), nil
}
