package app

import (
	"net/http"
	"strings"
	"time"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db/dbsqlc"
)

// apiKeyInput is the body of POST .../api-keys. Name is a label for people,
// so unlike resource names it may hold spaces. ExpiresAt, when set, is an
// RFC 3339 time in the future; it is a string here so that a bad value is
// reported against its field.
type apiKeyInput struct {
	Name      string  `json:"name"`
	ExpiresAt *string `json:"expires_at"`
}

// createdAPIKey is the answer to a key's creation: the only time its secret
// is ever shown.
type createdAPIKey struct {
	bud.APIKey
	Secret string `json:"secret"`
}

func apiKeyFromRow(row dbsqlc.APIKey) bud.APIKey {
	return bud.APIKey{
		ID:         row.ID,
		ProjectID:  row.ProjectID,
		Name:       row.Name,
		Prefix:     row.Prefix,
		CreatedAt:  row.CreatedAt,
		ExpiresAt:  row.ExpiresAt,
		LastUsedAt: row.LastUsedAt,
		RevokedAt:  row.RevokedAt,
		Revoked:    row.RevokedAt != nil,
	}
}

func (s *server) createAPIKey(w http.ResponseWriter, r *http.Request) {
	project := projectFrom(r)
	var in apiKeyInput
	if !s.decode(w, r, &in) {
		return
	}
	var p bud.Problems
	if strings.TrimSpace(in.Name) == "" {
		p.Add("name", "is required")
	}
	bud.CheckText(&p, "name", in.Name, bud.MaxNameLen)
	var expiresAt *time.Time
	if in.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *in.ExpiresAt)
		switch {
		case err != nil:
			p.Add("expires_at", "must be an RFC 3339 time such as 2030-01-31T12:00:00Z")
		case !t.After(time.Now()):
			p.Add("expires_at", "must be in the future")
		default:
			expiresAt = &t
		}
	}
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	secret, prefix, hash := bud.NewAPIKeySecret()
	row, err := s.q.CreateAPIKey(r.Context(), dbsqlc.CreateAPIKeyParams{
		ProjectID:  project.ID,
		Name:       in.Name,
		Prefix:     prefix,
		SecretHash: hash,
		ExpiresAt:  expiresAt,
	})
	switch {
	case isForeignKeyViolation(err):
		s.writeError(w, r, notFound("project"))
		return
	case err != nil:
		s.writeError(w, r, bud.Internal("create api key", err))
		return
	}
	// The body holds a live secret: no cache may keep it.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/api/projects/"+project.ID.String()+"/api-keys/"+row.ID.String())
	writeJSON(w, http.StatusCreated, createdAPIKey{APIKey: apiKeyFromRow(row), Secret: secret})
}

func (s *server) listAPIKeys(w http.ResponseWriter, r *http.Request) {
	project := projectFrom(r)
	limit, offset, err := pageParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	total, err := s.q.CountAPIKeys(r.Context(), project.ID)
	if err != nil {
		s.writeError(w, r, bud.Internal("count api keys", err))
		return
	}
	rows, err := s.q.ListAPIKeys(r.Context(), dbsqlc.ListAPIKeysParams{ProjectID: project.ID, SkipRows: offset, MaxRows: limit})
	if err != nil {
		s.writeError(w, r, bud.Internal("list api keys", err))
		return
	}
	out := page[bud.APIKey]{Data: make([]bud.APIKey, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, row := range rows {
		out.Data = append(out.Data, apiKeyFromRow(row))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) getAPIKey(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "key_id")
	if !ok {
		s.writeError(w, r, notFound("api key"))
		return
	}
	row, err := s.q.GetAPIKey(r.Context(), dbsqlc.GetAPIKeyParams{ProjectID: projectFrom(r).ID, ID: id})
	if err != nil {
		s.writeError(w, r, lookupError(err, "api key", "get api key"))
		return
	}
	writeJSON(w, http.StatusOK, apiKeyFromRow(row))
}

// revokeAPIKey marks the key revoked; the row stays so that its history
// (who, when last used) remains visible. Revoking twice is a no-op that
// keeps the first revocation time.
func (s *server) revokeAPIKey(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "key_id")
	if !ok {
		s.writeError(w, r, notFound("api key"))
		return
	}
	_, err := s.q.RevokeAPIKey(r.Context(), dbsqlc.RevokeAPIKeyParams{ProjectID: projectFrom(r).ID, ID: id})
	if err != nil {
		s.writeError(w, r, lookupError(err, "api key", "revoke api key"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
