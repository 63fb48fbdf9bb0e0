package app

import (
	"encoding/json"
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
	// RateLimit is the key's own limit; absent or null for none.
	RateLimit *bud.KeyRateLimit `json:"rate_limit"`
}

// apiKeyPatch is the body of PATCH .../api-keys/{id}. Absent fields keep
// their value; rate_limit null removes the key's limit.
type apiKeyPatch struct {
	Name      *string         `json:"name"`
	RateLimit json.RawMessage `json:"rate_limit"`
}

// createdAPIKey is the answer to a key's creation: the only time its secret
// is ever shown.
type createdAPIKey struct {
	bud.APIKey
	Secret string `json:"secret"`
}

func apiKeyFromRow(row dbsqlc.APIKey) bud.APIKey {
	var limit *bud.KeyRateLimit
	if row.RateRequestsPerMinute > 0 || row.RateTokensPerMinute > 0 {
		limit = &bud.KeyRateLimit{RequestsPerMinute: int(row.RateRequestsPerMinute), Burst: int(row.RateBurst), TokensPerMinute: int(row.RateTokensPerMinute)}
	}
	return bud.APIKey{
		RateLimit:  limit,
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
	checkKeyName(&p, in.Name)
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
	if in.RateLimit != nil {
		in.RateLimit.Check(&p, "rate_limit")
	}
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	secret, prefix, hash := bud.NewAPIKeySecret()
	rpm, burst, tpm := keyLimitColumns(in.RateLimit)
	row, err := s.q.CreateAPIKey(r.Context(), dbsqlc.CreateAPIKeyParams{
		ProjectID:             project.ID,
		Name:                  in.Name,
		Prefix:                prefix,
		SecretHash:            hash,
		ExpiresAt:             expiresAt,
		RateRequestsPerMinute: rpm,
		RateBurst:             burst,
		RateTokensPerMinute:   tpm,
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

// keyLimitColumns is a key's limit as stored: zeros for none. Check has
// bounded the values to the columns' types.
func keyLimitColumns(l *bud.KeyRateLimit) (rpm, burst int32, tpm int64) {
	if l == nil {
		return 0, 0, 0
	}
	return int32(l.RequestsPerMinute), int32(l.Burst), int64(l.TokensPerMinute)
}

// checkKeyName records the problems of a key's name.
func checkKeyName(p *bud.Problems, name string) {
	if strings.TrimSpace(name) == "" {
		p.Add("name", "is required")
	}
	bud.CheckText(p, "name", name, bud.MaxNameLen)
}

// patchAPIKey changes a key's name or its own rate limit. Gateways see
// the change within moments (the key's change notification).
func (s *server) patchAPIKey(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "key_id")
	if !ok {
		s.writeError(w, r, notFound("api key"))
		return
	}
	var in apiKeyPatch
	if !s.decode(w, r, &in) {
		return
	}
	project := projectFrom(r)
	row, err := s.q.GetAPIKey(r.Context(), dbsqlc.GetAPIKeyParams{ProjectID: project.ID, ID: id})
	if err != nil {
		s.writeError(w, r, lookupError(err, "api key", "get api key"))
		return
	}
	key := apiKeyFromRow(row)
	var p bud.Problems
	if in.Name != nil {
		key.Name = *in.Name
		checkKeyName(&p, key.Name)
	}
	if len(in.RateLimit) > 0 {
		key.RateLimit = nil
		if !isAbsent(in.RateLimit) {
			var l bud.KeyRateLimit
			if err := unmarshalStrict(in.RateLimit, &l, "rate_limit."); err != nil {
				s.writeError(w, r, err)
				return
			}
			l.Check(&p, "rate_limit")
			key.RateLimit = &l
		}
	}
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	rpm, burst, tpm := keyLimitColumns(key.RateLimit)
	row, err = s.q.UpdateAPIKey(r.Context(), dbsqlc.UpdateAPIKeyParams{
		ProjectID: project.ID, ID: id, Name: key.Name,
		RateRequestsPerMinute: rpm, RateBurst: burst, RateTokensPerMinute: tpm,
	})
	if err != nil {
		s.writeError(w, r, lookupError(err, "api key", "update api key"))
		return
	}
	writeJSON(w, http.StatusOK, apiKeyFromRow(row))
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
