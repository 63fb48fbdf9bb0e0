package app

import (
	"context"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db/dbsqlc"
)

// projectNameConstraint makes project names unique.
const projectNameConstraint = "projects_name_key"

type projectKey struct{}

// loadProject puts the project named by {project_id} in the context, or
// answers 404; every route below a project goes through it.
func (s *server) loadProject(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(r, "project_id")
		if !ok {
			s.writeError(w, r, notFound("project"))
			return
		}
		row, err := s.q.GetProject(r.Context(), id)
		if err != nil {
			s.writeError(w, r, lookupError(err, "project", "get project"))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), projectKey{}, row)))
	})
}

// projectFrom returns the project loadProject found.
func projectFrom(r *http.Request) dbsqlc.Project {
	return r.Context().Value(projectKey{}).(dbsqlc.Project)
}

func projectFromRow(row dbsqlc.Project) bud.Project {
	return bud.Project{
		ID:          row.ID,
		Name:        row.Name,
		Description: row.Description,
		CreatedAt:   row.CreatedAt,
		UpdatedAt:   row.UpdatedAt,
	}
}

// projectInput is the body of POST /api/projects.
type projectInput struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// projectPatch is the body of PATCH /api/projects/{id}; absent fields keep
// their value.
type projectPatch struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

func checkProject(name, description string) error {
	var p bud.Problems
	bud.CheckName(&p, "name", name)
	bud.CheckText(&p, "description", description, bud.MaxDescriptionLen)
	return p.Err()
}

func (s *server) createProject(w http.ResponseWriter, r *http.Request) {
	var in projectInput
	if !s.decode(w, r, &in) {
		return
	}
	if err := checkProject(in.Name, in.Description); err != nil {
		s.writeError(w, r, err)
		return
	}
	row, err := s.q.CreateProject(r.Context(), dbsqlc.CreateProjectParams{Name: in.Name, Description: in.Description})
	if err != nil {
		s.writeError(w, r, saveError(err, "create project", projectNameConstraint, "project", in.Name))
		return
	}
	w.Header().Set("Location", "/api/projects/"+row.ID.String())
	writeJSON(w, http.StatusCreated, projectFromRow(row))
}

func (s *server) listProjects(w http.ResponseWriter, r *http.Request) {
	limit, offset, err := pageParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	total, err := s.q.CountProjects(r.Context())
	if err != nil {
		s.writeError(w, r, bud.Internal("count projects", err))
		return
	}
	rows, err := s.q.ListProjects(r.Context(), dbsqlc.ListProjectsParams{SkipRows: offset, MaxRows: limit})
	if err != nil {
		s.writeError(w, r, bud.Internal("list projects", err))
		return
	}
	out := page[bud.Project]{Data: make([]bud.Project, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, row := range rows {
		out.Data = append(out.Data, projectFromRow(row))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) getProject(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, projectFromRow(projectFrom(r)))
}

func (s *server) patchProject(w http.ResponseWriter, r *http.Request) {
	id := projectFrom(r).ID
	var in projectPatch
	if !s.decode(w, r, &in) {
		return
	}
	// Read, merge and write in one repeatable-read transaction, so that a
	// concurrent PATCH fails instead of being silently undone.
	var row dbsqlc.Project
	err := pgx.BeginTxFunc(r.Context(), s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		q := dbsqlc.New(tx)
		cur, err := q.GetProject(r.Context(), id)
		if err != nil {
			return lookupError(err, "project", "get project")
		}
		upd := dbsqlc.UpdateProjectParams{ID: id, Name: cur.Name, Description: cur.Description}
		if in.Name != nil {
			upd.Name = *in.Name
		}
		if in.Description != nil {
			upd.Description = *in.Description
		}
		if err := checkProject(upd.Name, upd.Description); err != nil {
			return err
		}
		row, err = q.UpdateProject(r.Context(), upd)
		if err != nil {
			return saveError(err, "update project", projectNameConstraint, "project", upd.Name)
		}
		return nil
	})
	if isSerializationFailure(err) {
		err = errConcurrentUpdate("project")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, projectFromRow(row))
}

// deleteProject removes the project; the database cascades to its
// deployments and API keys, so its keys stop authenticating at once.
func (s *server) deleteProject(w http.ResponseWriter, r *http.Request) {
	n, err := s.q.DeleteProject(r.Context(), projectFrom(r).ID)
	if err != nil {
		s.writeError(w, r, bud.Internal("delete project", err))
		return
	}
	if n == 0 {
		s.writeError(w, r, notFound("project"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
