package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
)

// createPromptDeployment deploys a prompt into the project: an existing
// prompt named by prompt_id (optionally pinned to a version), or a new one
// given inline, created in the same call. The deployment's name, which
// callers send as prompt.id, defaults to the prompt's name. Without
// settings of its own, the deployment takes the deployed version's
// document's settings (deployedSettings).
func (s *server) createPromptDeployment(w http.ResponseWriter, r *http.Request, in deploymentInput, settings bud.Settings) {
	project := projectFrom(r)
	var p bud.Problems
	switch {
	case in.Upstream != nil:
		p.Add("upstream", "a prompt deployment has no upstream; its prompt names the model deployment")
	case !isAbsent(in.DefaultParams):
		p.Add("default_params", "a prompt deployment takes its model parameters from the prompt")
	case in.PromptID == nil && in.Prompt == nil:
		p.Add("prompt_id", "is required (or give a new prompt inline as \"prompt\")")
	case in.PromptID != nil && in.Prompt != nil:
		p.Add("prompt", "give either prompt_id or an inline prompt, not both")
	case in.Prompt != nil && in.Version != nil:
		p.Add("version", "a new prompt has only version 1")
	}
	if in.Version != nil && *in.Version < 1 {
		p.Add("version", "must be a positive integer")
	}
	var promptID uuid.UUID
	if in.PromptID != nil {
		id, err := uuid.Parse(*in.PromptID)
		if err != nil {
			p.Add("prompt_id", "must be a UUID")
		}
		promptID = id
	}
	if in.Prompt != nil {
		checkPromptMeta(&p, "prompt.", in.Prompt.Name, in.Prompt.Description, in.Prompt.Tags)
	}
	name := in.Name
	if name == "" && in.Prompt != nil {
		name = in.Prompt.Name
	}
	if name != "" || in.Prompt != nil {
		bud.CheckName(&p, "name", name)
	}
	settings.Check(&p, "settings")
	checkCopyInput(&p, in)
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	ownSettings := !isAbsent(in.Settings)
	// A prompt of another project is deployed here as a copy, prepared
	// (read, mapped and validated here) before the transaction.
	var cp *promptCopy
	if in.PromptID != nil {
		src, err := s.q.GetPrompt(r.Context(), promptID)
		switch {
		case db.IsNoRows(err):
			s.writeError(w, r, &bud.Error{Code: bud.ENOTFOUND, Message: "prompt not found", Fields: map[string]string{"prompt_id": "no such prompt"}})
			return
		case err != nil:
			s.writeError(w, r, bud.Internal("get prompt", err))
			return
		case src.ProjectID != project.ID && in.Copy == nil:
			s.writeError(w, r, &bud.Error{Code: bud.EUNPROCESSABLE, Message: "the prompt is in another project: deploy it here as a copy",
				Fields: map[string]string{"copy": "is required to deploy a prompt of another project ({\"versions\": \"chosen\"} or \"all\")"}})
			return
		case src.ProjectID == project.ID && in.Copy != nil:
			s.writeError(w, r, fieldError("copy", "the prompt is already in this project; copy is for a prompt of another project"))
			return
		case in.Copy != nil:
			c, err := s.preparePromptCopy(r.Context(), src, project.ID, in)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			cp = &c
			if !ownSettings {
				settings = c.versions[c.deployed].settings
			}
		}
	}
	var canonical []byte
	if in.Prompt != nil {
		doc, c, err := s.parseDocument(r.Context(), project.ID, in.Prompt.Document, "prompt.document.", nil)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		canonical = c
		if !ownSettings {
			settings = doc.Settings.Settings
		}
	}

	var row dbsqlc.Deployment
	err := pgx.BeginFunc(r.Context(), s.pool, func(tx pgx.Tx) error {
		q := dbsqlc.New(tx)
		var pr dbsqlc.Prompt
		version := in.Version
		if cp != nil {
			var err error
			if pr, err = s.createCopyTx(r.Context(), tx, project.ID, *cp); err != nil {
				return err
			}
			version = cp.pin
		} else if in.Prompt != nil {
			var err error
			if pr, err = s.createPromptTx(r.Context(), tx, project.ID, *in.Prompt, canonical); err != nil {
				var e *bud.Error
				if errors.As(err, &e) && e.Code == bud.ECONFLICT {
					e.Fields = map[string]string{"prompt.name": "is already taken"}
				}
				return err
			}
		} else {
			var err error
			pr, err = q.GetPrompt(r.Context(), promptID)
			// A prompt of another project is as absent as one of none.
			if db.IsNoRows(err) || (err == nil && pr.ProjectID != project.ID) {
				return &bud.Error{Code: bud.ENOTFOUND, Message: "prompt not found in this project", Fields: map[string]string{"prompt_id": "no such prompt in this project"}}
			}
			if err != nil {
				return bud.Internal("get prompt", err)
			}
			if in.Version != nil {
				if _, err := q.GetPromptVersion(r.Context(), dbsqlc.GetPromptVersionParams{PromptID: pr.ID, Version: *in.Version}); err != nil {
					if db.IsNoRows(err) {
						return fieldError("version", "is not a saved version of the prompt")
					}
					return bud.Internal("get prompt version", err)
				}
			}
		}
		if name == "" {
			name = pr.Name
			var p bud.Problems
			bud.CheckName(&p, "name", name)
			if err := p.Err(); err != nil {
				return err
			}
		}
		if !ownSettings && in.Prompt == nil && cp == nil {
			version := pr.DefaultVersion
			if in.Version != nil {
				version = *in.Version
			}
			var err error
			if settings, err = s.deployedSettings(r.Context(), pr.ID, version); err != nil {
				return err
			}
		}
		settingsJSON, err := json.Marshal(settings)
		if err != nil {
			return bud.Internal("encode settings", err)
		}
		row, err = q.CreatePromptDeployment(r.Context(), dbsqlc.CreatePromptDeploymentParams{
			ProjectID: project.ID, Name: name, PromptID: &pr.ID, PromptVersion: version, Settings: settingsJSON,
		})
		if err != nil {
			if isForeignKeyViolation(err) {
				return notFound("project")
			}
			return saveError(err, "create prompt deployment", deploymentNameConstraint, "deployment", name)
		}
		return nil
	})
	if err != nil {
		s.writeError(w, r, asAppError(err, "create prompt deployment"))
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

// deployedSettings are the settings of version of prompt promptID's
// document: what a deployment of it takes when created without its own.
// Every document's settings were checked when it was saved; an autoscale
// saved before it was refused reads false, as a deployment's does.
func (s *server) deployedSettings(ctx context.Context, promptID uuid.UUID, version int32) (bud.Settings, error) {
	_, raw, err := s.document(ctx, promptID, version)
	if err != nil {
		return bud.Settings{}, err
	}
	doc, err := prompt.Parse(raw)
	if err != nil {
		return bud.Settings{}, bud.Internal("parse stored prompt document", err)
	}
	settings := doc.Settings.Settings
	settings.Autoscale = false
	return settings, nil
}

// patchPromptDeployment changes a prompt deployment's name, settings or
// pinned version, in the caller's transaction.
func (s *server) patchPromptDeployment(ctx context.Context, q *dbsqlc.Queries, in deploymentPatch, cur dbsqlc.Deployment) (dbsqlc.Deployment, error) {
	settings, err := storedSettings(cur.Settings)
	if err != nil {
		return cur, err
	}
	if !isAbsent(in.Settings) {
		if settings, err = decodeSettings(in.Settings); err != nil {
			return cur, err
		}
	}
	var p bud.Problems
	name := cur.Name
	if in.Name != nil {
		name = *in.Name
	}
	bud.CheckName(&p, "name", name)
	if in.Upstream != nil {
		p.Add("upstream", "only model deployments have an upstream")
	}
	if !isAbsent(in.DefaultParams) {
		p.Add("default_params", "a prompt deployment takes its model parameters from the prompt")
	}
	settings.Check(&p, "settings")
	version := cur.PromptVersion
	if len(in.Version) > 0 {
		if string(in.Version) == "null" {
			version = nil
		} else {
			var n int32
			if json.Unmarshal(in.Version, &n) != nil || n < 1 {
				p.Add("version", "must be a positive integer, or null to follow the prompt's default")
			} else {
				version = &n
			}
		}
	}
	if err := p.Err(); err != nil {
		return cur, err
	}
	if version != nil && cur.PromptID != nil {
		if _, err := q.GetPromptVersion(ctx, dbsqlc.GetPromptVersionParams{PromptID: *cur.PromptID, Version: *version}); err != nil {
			if db.IsNoRows(err) {
				return cur, fieldError("version", "is not a saved version of the prompt")
			}
			return cur, bud.Internal("get prompt version", err)
		}
	}
	settingsJSON, err := json.Marshal(settings)
	if err != nil {
		return cur, bud.Internal("encode settings", err)
	}
	row, err := q.UpdatePromptDeployment(ctx, dbsqlc.UpdatePromptDeploymentParams{
		ProjectID: cur.ProjectID, ID: cur.ID, Name: name, PromptVersion: version, Settings: settingsJSON,
	})
	switch {
	case db.IsNoRows(err):
		return cur, notFound("deployment")
	case err != nil:
		return cur, saveError(err, "update deployment", deploymentNameConstraint, "deployment", name)
	}
	return row, nil
}
