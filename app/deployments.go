package app

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
)

// deploymentNameConstraint makes deployment names unique within a project.
const deploymentNameConstraint = "deployments_project_name_key"

// maxUpstreamModelLen bounds an upstream model id. Provider ids run longer
// than our names ("accounts/acme/models/llama-v3p1-70b-instruct"), so they get
// their own, generous limit.
const maxUpstreamModelLen = 256

// upstreamInput is the upstream of a deployment in a request. Every field is
// optional in a PATCH; in a POST base_url and model are required.
type upstreamInput struct {
	BaseURL *string `json:"base_url"`
	Model   *string `json:"model"`
	// APIKey is the provider's key; it is sealed before it is stored and
	// never returned. An empty string removes it.
	APIKey *string `json:"api_key"`
}

// deploymentInput is the body of POST .../deployments. Kind defaults to
// "model"; missing settings, and missing fields of settings, take
// bud.DefaultSettings().
type deploymentInput struct {
	Name          string          `json:"name"`
	Kind          string          `json:"kind"`
	Upstream      *upstreamInput  `json:"upstream"`
	DefaultParams json.RawMessage `json:"default_params"`
	// Settings stays raw so that it can be decoded over the defaults.
	Settings json.RawMessage `json:"settings"`
	// A prompt deployment names an existing prompt of the project and may
	// pin a version, or brings a whole new prompt inline.
	// PromptID is a string so that a malformed id is a 400 naming it
	// rather than a decoding failure without a field.
	PromptID *string      `json:"prompt_id"`
	Version  *int32       `json:"version"`
	Prompt   *promptInput `json:"prompt"`
	// Copy deploys prompt_id of another project by copying it into this
	// one; the maps lead the model deployments and connections (by name)
	// its documents use to this project's.
	Copy          *copyInput        `json:"copy"`
	DeploymentMap map[string]string `json:"deployment_map"`
	ConnectionMap map[string]string `json:"connection_map"`
}

// deploymentPatch is the body of PATCH .../deployments/{id}. Absent fields
// keep their value; default_params and settings replace the old ones whole
// (settings with defaults for the fields left out).
type deploymentPatch struct {
	Name          *string         `json:"name"`
	Upstream      *upstreamInput  `json:"upstream"`
	DefaultParams json.RawMessage `json:"default_params"`
	Settings      json.RawMessage `json:"settings"`
	// Version pins a prompt deployment to a version; null unpins it, so it
	// follows the prompt's default.
	Version json.RawMessage `json:"version"`
}

// decodeSettings decodes raw over bud.DefaultSettings(), so a caller may
// send only the fields it cares about. It refuses autoscale: true
// (bud.AutoscaleIsTheWorkers).
func decodeSettings(raw json.RawMessage) (bud.Settings, error) {
	settings := bud.DefaultSettings()
	if isAbsent(raw) {
		return settings, nil
	}
	if err := unmarshalStrict(raw, &settings, "settings."); err != nil {
		return settings, err
	}
	if settings.Autoscale {
		return settings, &bud.Error{Code: bud.EUNPROCESSABLE, Message: "settings.autoscale " + bud.AutoscaleIsTheWorkers,
			Fields: map[string]string{"settings.autoscale": bud.AutoscaleIsTheWorkers}}
	}
	return settings, nil
}

// storedSettings reads the settings column; fields it lacks (written before
// they existed) take their defaults. An autoscale stored before it was
// refused reads false: it never did anything.
func storedSettings(raw []byte) (bud.Settings, error) {
	settings := bud.DefaultSettings()
	if len(raw) == 0 {
		return settings, nil
	}
	if err := json.Unmarshal(raw, &settings); err != nil {
		return settings, bud.Internal("decode stored settings", err)
	}
	settings.Autoscale = false
	return settings, nil
}

// deploymentDraft is what a deployment will be once saved, gathered
// so that it is checked whole.
type deploymentDraft struct {
	name, baseURL, model string
	defaultParams        json.RawMessage
	settings             bud.Settings
}

func (d deploymentDraft) check(p *bud.Problems, kind string) {
	bud.CheckName(p, "name", d.name)
	if kind == bud.KindModel {
		bud.CheckBaseURL(p, "upstream.base_url", d.baseURL)
		if d.model == "" {
			p.Add("upstream.model", "is required")
		}
		bud.CheckText(p, "upstream.model", d.model, maxUpstreamModelLen)
	}
	bud.CheckDefaultParams(p, "default_params", d.defaultParams)
	d.settings.Check(p, "settings")
}

func deploymentFromRow(row dbsqlc.Deployment) (bud.Deployment, error) {
	settings, err := storedSettings(row.Settings)
	if err != nil {
		return bud.Deployment{}, err
	}
	d := bud.Deployment{
		ID:            row.ID,
		ProjectID:     row.ProjectID,
		Name:          row.Name,
		Kind:          row.Kind,
		DefaultParams: json.RawMessage(row.DefaultParams),
		Settings:      settings,
		CreatedAt:     row.CreatedAt,
		UpdatedAt:     row.UpdatedAt,
	}
	if len(d.DefaultParams) == 0 {
		d.DefaultParams = json.RawMessage("{}")
	}
	if row.Kind == bud.KindModel {
		d.Upstream = &bud.Upstream{BaseURL: row.BaseURL, Model: row.UpstreamModel, APIKeySet: len(row.APIKeySealed) > 0}
	}
	if row.Kind == bud.KindPrompt && row.PromptID != nil {
		d.Prompt = &bud.PromptRef{ID: *row.PromptID, Version: row.PromptVersion}
	}
	return d, nil
}

// sealAPIKey seals a provider key bound to its deployment's id, so that a
// sealed value copied into another row does not open.
func (s *server) sealAPIKey(key string, row dbsqlc.Deployment) []byte {
	return s.box.Seal([]byte(key), row.ID[:])
}

func (s *server) createDeployment(w http.ResponseWriter, r *http.Request) {
	project := projectFrom(r)
	var in deploymentInput
	if !s.decode(w, r, &in) {
		return
	}
	settings, err := decodeSettings(in.Settings)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	d := deploymentDraft{name: in.Name, defaultParams: in.DefaultParams, settings: settings}
	if isAbsent(d.defaultParams) {
		d.defaultParams = json.RawMessage("{}")
	}
	var apiKey string
	if in.Upstream != nil {
		d.baseURL = deref(in.Upstream.BaseURL)
		d.model = deref(in.Upstream.Model)
		apiKey = deref(in.Upstream.APIKey)
	}
	var p bud.Problems
	switch in.Kind {
	case "", bud.KindModel:
		if in.PromptID != nil || in.Version != nil || in.Prompt != nil || in.Copy != nil || in.DeploymentMap != nil || in.ConnectionMap != nil {
			p.Add("kind", "must be %q for a deployment of a prompt", bud.KindPrompt)
		}
	case bud.KindPrompt:
		s.createPromptDeployment(w, r, in, settings)
		return
	default:
		p.Add("kind", "must be %q or %q", bud.KindModel, bud.KindPrompt)
	}
	d.check(&p, bud.KindModel)
	bud.CheckText(&p, "upstream.api_key", apiKey, bud.MaxSecretLen)
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	settingsJSON, err := json.Marshal(d.settings)
	if err != nil {
		s.writeError(w, r, bud.Internal("encode settings", err))
		return
	}

	// The key is sealed with the row's id, which the database assigns on
	// insert; so the row is inserted without it and updated in the same
	// transaction.
	var row dbsqlc.Deployment
	err = pgx.BeginFunc(r.Context(), s.pool, func(tx pgx.Tx) error {
		q := dbsqlc.New(tx)
		var err error
		row, err = q.CreateDeployment(r.Context(), dbsqlc.CreateDeploymentParams{
			ProjectID:     project.ID,
			Name:          d.name,
			Kind:          bud.KindModel,
			BaseURL:       d.baseURL,
			UpstreamModel: d.model,
			DefaultParams: d.defaultParams,
			Settings:      settingsJSON,
		})
		if err != nil || apiKey == "" {
			return err
		}
		row, err = q.UpdateDeployment(r.Context(), dbsqlc.UpdateDeploymentParams{
			ProjectID:     row.ProjectID,
			ID:            row.ID,
			Name:          row.Name,
			BaseURL:       row.BaseURL,
			UpstreamModel: row.UpstreamModel,
			APIKeySealed:  s.sealAPIKey(apiKey, row),
			DefaultParams: row.DefaultParams,
			Settings:      row.Settings,
		})
		return err
	})
	switch {
	case isForeignKeyViolation(err):
		s.writeError(w, r, notFound("project"))
		return
	case err != nil:
		s.writeError(w, r, saveError(err, "create deployment", deploymentNameConstraint, "deployment", d.name))
		return
	}
	out, err := deploymentFromRow(row)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/projects/"+project.ID.String()+"/deployments/"+row.ID.String())
	writeJSON(w, http.StatusCreated, out)
}

func (s *server) listDeployments(w http.ResponseWriter, r *http.Request) {
	project := projectFrom(r)
	limit, offset, err := pageParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	total, err := s.q.CountDeployments(r.Context(), project.ID)
	if err != nil {
		s.writeError(w, r, bud.Internal("count deployments", err))
		return
	}
	rows, err := s.q.ListDeployments(r.Context(), dbsqlc.ListDeploymentsParams{ProjectID: project.ID, SkipRows: offset, MaxRows: limit})
	if err != nil {
		s.writeError(w, r, bud.Internal("list deployments", err))
		return
	}
	out := page[bud.Deployment]{Data: make([]bud.Deployment, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, row := range rows {
		d, err := deploymentFromRow(row)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out.Data = append(out.Data, d)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) getDeployment(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "deployment_id")
	if !ok {
		s.writeError(w, r, notFound("deployment"))
		return
	}
	row, err := s.q.GetDeployment(r.Context(), dbsqlc.GetDeploymentParams{ProjectID: projectFrom(r).ID, ID: id})
	if err != nil {
		s.writeError(w, r, lookupError(err, "deployment", "get deployment"))
		return
	}
	out, err := deploymentFromRow(row)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) patchDeployment(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "deployment_id")
	if !ok {
		s.writeError(w, r, notFound("deployment"))
		return
	}
	var in deploymentPatch
	if !s.decode(w, r, &in) {
		return
	}
	// Read, merge and write in one repeatable-read transaction, so that a
	// concurrent PATCH fails instead of being silently undone.
	var row dbsqlc.Deployment
	err := pgx.BeginTxFunc(r.Context(), s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		q := dbsqlc.New(tx)
		cur, err := q.GetDeployment(r.Context(), dbsqlc.GetDeploymentParams{ProjectID: projectFrom(r).ID, ID: id})
		if err != nil {
			return lookupError(err, "deployment", "get deployment")
		}
		if cur.Kind == bud.KindPrompt {
			row, err = s.patchPromptDeployment(r.Context(), q, in, cur)
			return err
		}
		if !isAbsent(in.Version) {
			return fieldError("version", "only prompt deployments have a version")
		}
		upd, err := s.applyPatch(in, cur)
		if err != nil {
			return err
		}
		row, err = q.UpdateDeployment(r.Context(), upd)
		switch {
		case db.IsNoRows(err):
			return notFound("deployment")
		case err != nil:
			return saveError(err, "update deployment", deploymentNameConstraint, "deployment", upd.Name)
		}
		return nil
	})
	if isSerializationFailure(err) {
		err = errConcurrentUpdate("deployment")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := deploymentFromRow(row)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// applyPatch merges in over cur and checks the result whole.
func (s *server) applyPatch(in deploymentPatch, cur dbsqlc.Deployment) (dbsqlc.UpdateDeploymentParams, error) {
	settings, err := storedSettings(cur.Settings)
	if err != nil {
		return dbsqlc.UpdateDeploymentParams{}, err
	}
	if !isAbsent(in.Settings) {
		if settings, err = decodeSettings(in.Settings); err != nil {
			return dbsqlc.UpdateDeploymentParams{}, err
		}
	}
	d := deploymentDraft{name: cur.Name, baseURL: cur.BaseURL, model: cur.UpstreamModel, defaultParams: cur.DefaultParams, settings: settings}
	sealed := cur.APIKeySealed
	var p bud.Problems
	if in.Name != nil {
		d.name = *in.Name
	}
	if !isAbsent(in.DefaultParams) {
		d.defaultParams = in.DefaultParams
	}
	if u := in.Upstream; u != nil {
		if cur.Kind != bud.KindModel {
			p.Add("upstream", "only model deployments have an upstream")
		}
		if u.BaseURL != nil {
			d.baseURL = *u.BaseURL
		}
		if u.Model != nil {
			d.model = *u.Model
		}
		if u.APIKey != nil {
			bud.CheckText(&p, "upstream.api_key", *u.APIKey, bud.MaxSecretLen)
			sealed = nil
			if *u.APIKey != "" {
				sealed = s.sealAPIKey(*u.APIKey, cur)
			}
		}
	}
	d.check(&p, cur.Kind)
	if err := p.Err(); err != nil {
		return dbsqlc.UpdateDeploymentParams{}, err
	}
	if len(cur.APIKeySealed) > 0 && (in.Upstream == nil || in.Upstream.APIKey == nil) && !sameOrigin(cur.BaseURL, d.baseURL) {
		return dbsqlc.UpdateDeploymentParams{}, secretRequired("upstream.api_key",
			"must be sent again when upstream.base_url moves to another host: the stored key is never sent anywhere it was not given for")
	}
	settingsJSON, err := json.Marshal(d.settings)
	if err != nil {
		return dbsqlc.UpdateDeploymentParams{}, bud.Internal("encode settings", err)
	}
	return dbsqlc.UpdateDeploymentParams{
		ProjectID:     cur.ProjectID,
		ID:            cur.ID,
		Name:          d.name,
		BaseURL:       d.baseURL,
		UpstreamModel: d.model,
		APIKeySealed:  sealed,
		DefaultParams: d.defaultParams,
		Settings:      settingsJSON,
	}, nil
}

func (s *server) deleteDeployment(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "deployment_id")
	if !ok {
		s.writeError(w, r, notFound("deployment"))
		return
	}
	n, err := s.q.DeleteDeployment(r.Context(), dbsqlc.DeleteDeploymentParams{ProjectID: projectFrom(r).ID, ID: id})
	if err != nil {
		s.writeError(w, r, bud.Internal("delete deployment", err))
		return
	}
	if n == 0 {
		s.writeError(w, r, notFound("deployment"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sameOrigin reports whether two absolute URLs have the same scheme, host
// and port (a default port spelled out or not), where a stored secret
// would go to the same server.
func sameOrigin(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return false
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) &&
		strings.EqualFold(ua.Hostname(), ub.Hostname()) &&
		effectivePort(ua) == effectivePort(ub)
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
