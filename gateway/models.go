package gateway

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/deployment"
)

// model is OpenAI's model object.
type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// listModels lists the model deployments of the caller's project, and
// nothing of any other project.
func (g *Gateway) listModels(w http.ResponseWriter, r *http.Request) {
	c := callerFrom(r.Context())
	rows, err := g.q.ListDeploymentsByKind(r.Context(), dbsqlc.ListDeploymentsByKindParams{ProjectID: c.projectID, Kind: bud.KindModel})
	if err != nil {
		g.log.Error("list models", "err", err)
		writeAPIError(w, errInternal())
		return
	}
	data := make([]model, 0, len(rows))
	for _, d := range rows {
		data = append(data, model{ID: d.Name, Object: "model", Created: d.CreatedAt.Unix(), OwnedBy: "bud"})
	}
	writeJSON(w, http.StatusOK, struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", data})
}

// getModel describes one model deployment; names may contain slashes.
func (g *Gateway) getModel(w http.ResponseWriter, r *http.Request) {
	c := callerFrom(r.Context())
	name := strings.TrimPrefix(chi.URLParam(r, "*"), "/")
	if name == "" {
		writeAPIError(w, errModelNotFound(name))
		return
	}
	d, err := g.deployments.Model(r.Context(), c.projectID, name)
	switch {
	case errors.Is(err, deployment.ErrNotFound):
		writeAPIError(w, errModelNotFound(name))
		return
	case err != nil:
		g.log.Error("load deployment", "err", err)
		writeAPIError(w, errInternal())
		return
	}
	writeJSON(w, http.StatusOK, model{ID: d.Name, Object: "model", Created: d.CreatedAt.Unix(), OwnedBy: "bud"})
}
