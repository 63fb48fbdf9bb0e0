package app

// Custom rules: their translation into CEL when a document is saved, and
// the preview an authoring form shows before saving.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/customrule"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
)

// translateRules gives every CEL rule of doc its translation. A rule that
// comes with one, for its own text, keeps it once it compiles against its
// variable and holds on its examples; a rule whose text, variable type and
// place are those of a translated rule of prev reuses that translation;
// the others go to the document's validation deployment in one
// translation workflow. A rule that cannot be translated, or a kept
// translation that does not hold, is a 422 naming the rule's path under
// prefix.
func (s *server) translateRules(ctx context.Context, projectID uuid.UUID, doc, prev *prompt.Document, prefix string) error {
	reuse := map[string]prompt.RuleSite{}
	if prev != nil {
		for _, site := range prev.RuleSites() {
			if site.Rule.Translation != nil {
				reuse[site.Path] = site
			}
		}
	}
	var p bud.Problems
	var todo []prompt.RuleSite
	for _, site := range doc.RuleSites() {
		r := site.Rule
		if r.Judge() {
			continue
		}
		if r.Translation != nil && r.Translation.Rule == r.Rule {
			if _, problem := customrule.Verify(*r.Translation, site.Variable, site.Direction, doc.Shapes()); problem != "" {
				p.Add(prefix+site.Path+".translation", "%s", problem)
			}
			continue
		}
		r.Translation = nil
		if old, ok := reuse[site.Path]; ok && old.Rule.Rule == r.Rule && old.Variable.Type == site.Variable.Type {
			if _, problem := customrule.Verify(*old.Rule.Translation, site.Variable, site.Direction, doc.Shapes()); problem == "" {
				t := *old.Rule.Translation
				r.Translation = &t
				continue
			}
		}
		todo = append(todo, site)
	}
	if err := rulesError(p); err != nil || len(todo) == 0 {
		return err
	}
	if s.runs == nil {
		return bud.Errorf(bud.EUNAVAILABLE, "custom rules are translated by the prompt worker, which this server cannot reach")
	}
	req := customrule.Request{ProjectID: projectID, Deployment: doc.RuleDeployment()}
	for _, site := range todo {
		req.Rules = append(req.Rules, customrule.RuleRequest{Path: site.Path, Direction: site.Direction, Variable: site.Variable, Rule: site.Rule.Rule, Shapes: doc.Shapes()})
	}
	res, err := s.runs.TranslateRules(ctx, req)
	if err != nil {
		return bud.Internal("translate custom rules", err)
	}
	for i, site := range todo {
		if i >= len(res.Rules) {
			return bud.Internal("translate custom rules", errShortResult)
		}
		rr := res.Rules[i]
		if rr.Translation == nil {
			p.Add(prefix+site.Path, "could not be translated into CEL by %q after %d tries: %s", req.Deployment, rr.Tries, rr.Problem)
			continue
		}
		site.Rule.Translation = rr.Translation
	}
	return rulesError(p)
}

// rulesError is a 422 listing rules that cannot be checked.
func rulesError(p bud.Problems) error {
	if len(p) == 0 {
		return nil
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + p[k]
	}
	return &bud.Error{Code: bud.EUNPROCESSABLE, Message: "custom rules that cannot be checked: " + strings.Join(parts, "; "), Fields: p}
}

var errShortResult = errors.New("the translation answered fewer rules than asked")

// previewInput is POST /api/validation/preview.
type previewInput struct {
	ProjectID  string `json:"project_id"`
	Type       string `json:"type"`
	Rule       string `json:"rule"`
	Direction  string `json:"direction"`
	Deployment string `json:"deployment"`
}

// previewOutput is a rule's translation with its examples' verdicts, or
// why the model's last try failed.
type previewOutput struct {
	Rule         string               `json:"rule"`
	Direction    string               `json:"direction"`
	Deployment   string               `json:"deployment"`
	Translated   bool                 `json:"translated"`
	Expression   string               `json:"expression,omitempty"`
	Examples     *prompt.RuleExamples `json:"examples,omitempty"`
	Verdicts     []customrule.Verdict `json:"verdicts"`
	Problem      string               `json:"problem,omitempty"`
	Tries        int                  `json:"tries"`
	TranslatedAt any                  `json:"translated_at,omitempty"`
}

// previewRule translates one rule as a save would and answers with the
// expression and its examples' verdicts, saving nothing. The deployment
// must be a model deployment of the project; absent, the project's only
// model deployment translates.
func (s *server) previewRule(w http.ResponseWriter, r *http.Request) {
	var in previewInput
	if !s.decode(w, r, &in) {
		return
	}
	projectID, err := s.requestProject(r.Context(), in.ProjectID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var p bud.Problems
	switch in.Type {
	case prompt.TypeString, prompt.TypeInteger, prompt.TypeNumber, prompt.TypeBoolean, prompt.TypeEnum:
	case prompt.TypeArray, prompt.TypeObject:
		p.Add("type", "%q needs its items or variables: save the rule in a document to translate it", in.Type)
	case "":
		p.Add("type", "is required")
	default:
		p.Add("type", "must be one of %q, %q, %q, %q, %q", prompt.TypeString, prompt.TypeInteger, prompt.TypeNumber, prompt.TypeBoolean, prompt.TypeEnum)
	}
	if strings.TrimSpace(in.Rule) == "" {
		p.Add("rule", "is required")
	}
	bud.CheckText(&p, "rule", in.Rule, bud.MaxDescriptionLen)
	switch in.Direction {
	case prompt.DirectionInput, prompt.DirectionOutput:
	case "":
		p.Add("direction", "is required")
	default:
		p.Add("direction", "must be %q or %q", prompt.DirectionInput, prompt.DirectionOutput)
	}
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	if in.Deployment, err = s.ruleDeployment(r.Context(), projectID, in.Deployment); err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.runs == nil {
		s.writeError(w, r, bud.Errorf(bud.EUNAVAILABLE, "custom rules are translated by the prompt worker, which this server cannot reach"))
		return
	}
	res, err := s.runs.TranslateRules(r.Context(), customrule.Request{ProjectID: projectID, Deployment: in.Deployment, Rules: []customrule.RuleRequest{{
		Path: "rule", Direction: in.Direction, Variable: prompt.Variable{Name: "value", Type: in.Type}, Rule: in.Rule,
	}}})
	if err != nil || len(res.Rules) != 1 {
		s.writeError(w, r, bud.Internal("preview custom rule", errors.Join(err, errShortResult)))
		return
	}
	rr := res.Rules[0]
	out := previewOutput{Rule: in.Rule, Direction: in.Direction, Deployment: in.Deployment, Verdicts: rr.Verdicts, Problem: rr.Problem, Tries: rr.Tries}
	if out.Verdicts == nil {
		out.Verdicts = []customrule.Verdict{}
	}
	if t := rr.Translation; t != nil {
		out.Translated, out.Expression, out.Examples, out.TranslatedAt = true, t.Expression, &t.Examples, t.TranslatedAt
	}
	writeJSON(w, http.StatusOK, out)
}

// ruleDeployment checks that name is a model deployment of the project, or
// with no name, finds the project's only one (422 naming deployment
// otherwise).
func (s *server) ruleDeployment(ctx context.Context, projectID uuid.UUID, name string) (string, error) {
	if name == "" {
		rows, err := s.q.ListDeploymentsByKind(ctx, dbsqlc.ListDeploymentsByKindParams{ProjectID: projectID, Kind: bud.KindModel})
		if err != nil {
			return "", bud.Internal("list model deployments", err)
		}
		if len(rows) != 1 {
			return "", unprocessable("deployment", "is required: name the model deployment that translates the rule")
		}
		return rows[0].Name, nil
	}
	row, err := s.q.GetDeploymentByName(ctx, dbsqlc.GetDeploymentByNameParams{ProjectID: projectID, Name: name})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", unprocessable("deployment", fmt.Sprintf("no deployment named %q in this project", name))
	case err != nil:
		return "", bud.Internal("get deployment", err)
	case row.Kind != bud.KindModel:
		return "", unprocessable("deployment", fmt.Sprintf("must be a model deployment, not a %s deployment", row.Kind))
	}
	return name, nil
}

func unprocessable(field, problem string) error {
	return &bud.Error{Code: bud.EUNPROCESSABLE, Message: field + ": " + problem, Fields: map[string]string{field: problem}}
}
