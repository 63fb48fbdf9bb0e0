package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/prompt"
	"github.com/budhq/bud/statestore"
)

// promptNameConstraint makes prompt names unique within a project.
const promptNameConstraint = "prompts_project_name_key"

// Limits on a prompt's tags.
const (
	maxTags    = 20
	maxTagLen  = 50
	maxNoteLen = 2000
)

// Documents keeps prompt documents, one immutable document per version.
// statestore.Store (Dapr) is the implementation.
type Documents interface {
	Put(ctx context.Context, key string, doc []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
	DeleteMany(ctx context.Context, keys []string) error
}

// Prompt is a prompt's metadata, with one version's document when asked.
type Prompt struct {
	ID             uuid.UUID       `json:"id"`
	ProjectID      uuid.UUID       `json:"project_id"`
	Name           string          `json:"name"`
	Description    string          `json:"description"`
	Tags           []string        `json:"tags"`
	DefaultVersion int32           `json:"default_version"`
	LatestVersion  int32           `json:"latest_version"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	Version        *int32          `json:"version,omitempty"`
	Document       json.RawMessage `json:"document,omitempty"`
}

// PromptVersion is one saved version of a prompt.
type PromptVersion struct {
	PromptID  uuid.UUID       `json:"prompt_id"`
	Version   int32           `json:"version"`
	Note      string          `json:"note"`
	CreatedAt time.Time       `json:"created_at"`
	Document  json.RawMessage `json:"document,omitempty"`
}

func promptFromRow(row dbsqlc.Prompt) Prompt {
	tags := row.Tags
	if tags == nil {
		tags = []string{}
	}
	return Prompt{
		ID: row.ID, ProjectID: row.ProjectID, Name: row.Name, Description: row.Description, Tags: tags,
		DefaultVersion: row.DefaultVersion, LatestVersion: row.LatestVersion, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt,
	}
}

// promptInput is the body of POST .../prompts.
type promptInput struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Tags        []string        `json:"tags"`
	Document    json.RawMessage `json:"document"`
}

// promptPatch is the body of PATCH /api/prompts/{id}; absent fields keep
// their value.
type promptPatch struct {
	Name           *string   `json:"name"`
	Description    *string   `json:"description"`
	Tags           *[]string `json:"tags"`
	DefaultVersion *int32    `json:"default_version"`
}

// versionInput is the body of POST /api/prompts/{id}/versions.
type versionInput struct {
	Document    json.RawMessage `json:"document"`
	Note        string          `json:"note"`
	MakeDefault bool            `json:"make_default"`
}

func checkPromptMeta(p *bud.Problems, prefix, name, description string, tags []string) {
	bud.CheckName(p, prefix+"name", name)
	bud.CheckText(p, prefix+"description", description, bud.MaxDescriptionLen)
	if len(tags) > maxTags {
		p.Add(prefix+"tags", "must have at most %d tags", maxTags)
	}
	seen := map[string]bool{}
	for i, t := range tags {
		f := prefix + "tags[" + strconv.Itoa(i) + "]"
		switch {
		case strings.TrimSpace(t) == "":
			p.Add(f, "must not be blank")
		case utf8.RuneCountInString(t) > maxTagLen:
			p.Add(f, "must be at most %d characters", maxTagLen)
		case seen[t]:
			p.Add(f, "is a duplicate")
		}
		seen[t] = true
	}
}

// parseDocument parses and validates a prompt document for a project. Field
// paths are prefixed (with "document." or "prompt.document.") so that the
// caller sees where in its request each problem is.
//
// Its custom rules are translated into CEL (translateRules), reusing the
// translations of prev, the version before, when it is not nil.
func (s *server) parseDocument(ctx context.Context, projectID uuid.UUID, raw json.RawMessage, prefix string, prev *prompt.Document) (*prompt.Document, []byte, error) {
	if isAbsent(raw) {
		return nil, nil, fieldError(prefix[:len(prefix)-1], "is required")
	}
	doc, err := prompt.Parse(raw)
	if err != nil {
		return nil, nil, prefixed(err, prefix)
	}
	var lookupErr, connLookupErr error
	checker := prompt.Checker{
		DeploymentKind: func(name string) (string, bool) {
			row, err := s.q.GetDeploymentByName(ctx, dbsqlc.GetDeploymentByNameParams{ProjectID: projectID, Name: name})
			if err != nil {
				if !errors.Is(err, pgx.ErrNoRows) {
					lookupErr = err
				}
				return "", false
			}
			return row.Kind, true
		},
		ConnectionExists: s.connectionExists(ctx, projectID, &connLookupErr),
	}
	err = doc.Validate(checker)
	if lookupErr != nil {
		return nil, nil, bud.Internal("validate prompt: look up deployment", lookupErr)
	}
	if connLookupErr != nil {
		return nil, nil, bud.Internal("validate prompt: look up connection", connLookupErr)
	}
	if err != nil {
		return nil, nil, prefixed(err, prefix)
	}
	if err := s.translateRules(ctx, projectID, doc, prev, prefix); err != nil {
		return nil, nil, err
	}
	// The stored form is the parsed one: defaults filled in, so a version
	// reads the same whatever defaults later code has.
	canonical, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, bud.Internal("encode prompt document", err)
	}
	return doc, canonical, nil
}

// prefixed moves the field paths of a *bud.Error under prefix.
func prefixed(err error, prefix string) error {
	var e *bud.Error
	if !errors.As(err, &e) || len(e.Fields) == 0 {
		return err
	}
	fields := make(map[string]string, len(e.Fields))
	for k, v := range e.Fields {
		fields[prefix+k] = v
	}
	out := *e
	out.Fields = fields
	return &out
}

// storeError maps a state-store failure: an unreachable store is a 503 that
// says so; anything else is internal.
func storeError(err error, op string) error {
	if errors.Is(err, statestore.ErrUnavailable) {
		return bud.Errorf(bud.EUNAVAILABLE, "the prompt store (Dapr state store) is unavailable; nothing was changed, try again")
	}
	return bud.Internal(op, err)
}

// saveVersion stores doc as the next version of the locked prompt and
// records it, inside tx. The document is written first: if anything after it
// fails, the transaction rolls back and no version is visible — at most an
// orphan document remains, which the next save of that number replaces.
func (s *server) saveVersion(ctx context.Context, tx pgx.Tx, p dbsqlc.Prompt, doc []byte, note string, makeDefault bool) (dbsqlc.Prompt, dbsqlc.PromptVersion, error) {
	q := dbsqlc.New(tx)
	n := p.LatestVersion + 1
	key := statestore.DocumentKey(p.ID, int(n))
	if err := s.docs.Put(ctx, key, doc); err != nil {
		if !errors.Is(err, statestore.ErrExists) {
			return p, dbsqlc.PromptVersion{}, storeError(err, "put prompt document")
		}
		// An orphan of a save that failed after its document was written:
		// no version row names it (we hold the prompt's lock), so it is
		// not a stored version and may be replaced.
		if err := s.docs.Delete(ctx, key); err != nil {
			return p, dbsqlc.PromptVersion{}, storeError(err, "replace orphan prompt document")
		}
		if err := s.docs.Put(ctx, key, doc); err != nil {
			return p, dbsqlc.PromptVersion{}, storeError(err, "put prompt document")
		}
	}
	v, err := q.CreatePromptVersion(ctx, dbsqlc.CreatePromptVersionParams{PromptID: p.ID, Version: n, Note: note, StateKey: key})
	if err != nil {
		return p, v, bud.Internal("create prompt version", err)
	}
	p, err = q.SetPromptLatestVersion(ctx, dbsqlc.SetPromptLatestVersionParams{ID: p.ID, Version: n, MakeDefault: makeDefault})
	if err != nil {
		return p, v, bud.Internal("set latest prompt version", err)
	}
	return p, v, nil
}

// createPromptTx creates a prompt with its first version, which becomes the
// default, in tx.
func (s *server) createPromptTx(ctx context.Context, tx pgx.Tx, projectID uuid.UUID, in promptInput, doc []byte) (dbsqlc.Prompt, error) {
	tags := in.Tags
	if tags == nil {
		tags = []string{}
	}
	row, err := dbsqlc.New(tx).CreatePrompt(ctx, dbsqlc.CreatePromptParams{ProjectID: projectID, Name: in.Name, Description: in.Description, Tags: tags})
	if err != nil {
		if isForeignKeyViolation(err) {
			return row, notFound("project")
		}
		return row, saveError(err, "create prompt", promptNameConstraint, "prompt", in.Name)
	}
	row, _, err = s.saveVersion(ctx, tx, row, doc, "", true)
	return row, err
}

func (s *server) createPrompt(w http.ResponseWriter, r *http.Request) {
	project := projectFrom(r)
	var in promptInput
	if !s.decode(w, r, &in) {
		return
	}
	var p bud.Problems
	checkPromptMeta(&p, "", in.Name, in.Description, in.Tags)
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	_, canonical, err := s.parseDocument(r.Context(), project.ID, in.Document, "document.", nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var row dbsqlc.Prompt
	err = pgx.BeginFunc(r.Context(), s.pool, func(tx pgx.Tx) error {
		var err error
		row, err = s.createPromptTx(r.Context(), tx, project.ID, in, canonical)
		return err
	})
	if err != nil {
		s.writeError(w, r, asAppError(err, "create prompt"))
		return
	}
	out := promptFromRow(row)
	out.Version, out.Document = &row.DefaultVersion, canonical
	w.Header().Set("Location", "/api/prompts/"+row.ID.String())
	writeJSON(w, http.StatusCreated, out)
}

// asAppError keeps a *bud.Error as it is and makes anything else internal.
func asAppError(err error, op string) error {
	var e *bud.Error
	if errors.As(err, &e) {
		return err
	}
	return bud.Internal(op, err)
}

func (s *server) listPrompts(w http.ResponseWriter, r *http.Request) {
	var projectID *uuid.UUID
	if v, ok := r.Context().Value(projectKey{}).(dbsqlc.Project); ok {
		projectID = &v.ID
	} else if raw := r.URL.Query().Get("project_id"); raw != "" {
		id, err := uuid.Parse(raw)
		if err != nil {
			s.writeError(w, r, fieldError("project_id", "must be a UUID"))
			return
		}
		projectID = &id
	}
	limit, offset, err := pageParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var nameSearch, tag *string
	if v := r.URL.Query().Get("q"); v != "" {
		// ILIKE wildcards in the search are matched literally.
		v = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(v)
		nameSearch = &v
	}
	if v := r.URL.Query().Get("tag"); v != "" {
		tag = &v
	}
	rows, err := s.q.ListPrompts(r.Context(), dbsqlc.ListPromptsParams{ProjectID: projectID, NameSearch: nameSearch, Tag: tag, MaxRows: limit, SkipRows: offset})
	if err != nil {
		s.writeError(w, r, bud.Internal("list prompts", err))
		return
	}
	total, err := s.q.CountPrompts(r.Context(), dbsqlc.CountPromptsParams{ProjectID: projectID, NameSearch: nameSearch, Tag: tag})
	if err != nil {
		s.writeError(w, r, bud.Internal("count prompts", err))
		return
	}
	out := page[Prompt]{Data: make([]Prompt, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, row := range rows {
		out.Data = append(out.Data, promptFromRow(row))
	}
	writeJSON(w, http.StatusOK, out)
}

type promptKey struct{}

// loadPrompt puts the prompt named by {prompt_id} in the context, or
// answers 404.
func (s *server) loadPrompt(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(r, "prompt_id")
		if !ok {
			s.writeError(w, r, notFound("prompt"))
			return
		}
		row, err := s.q.GetPrompt(r.Context(), id)
		if err != nil {
			s.writeError(w, r, lookupError(err, "prompt", "get prompt"))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), promptKey{}, row)))
	})
}

func promptFrom(r *http.Request) dbsqlc.Prompt {
	return r.Context().Value(promptKey{}).(dbsqlc.Prompt)
}

// versionParam reads a version number from a path or query value.
func versionParam(raw, field string) (int32, error) {
	n, err := strconv.ParseInt(raw, 10, 32)
	if err != nil || n < 1 {
		return 0, fieldError(field, "must be a positive integer")
	}
	return int32(n), nil
}

// document reads one version's document through its metadata row.
func (s *server) document(ctx context.Context, promptID uuid.UUID, version int32) (dbsqlc.PromptVersion, []byte, error) {
	v, err := s.q.GetPromptVersion(ctx, dbsqlc.GetPromptVersionParams{PromptID: promptID, Version: version})
	if err != nil {
		return v, nil, lookupError(err, "prompt version", "get prompt version")
	}
	doc, err := s.docs.Get(ctx, v.StateKey)
	if err != nil {
		return v, nil, storeError(err, "get prompt document")
	}
	return v, doc, nil
}

func (s *server) getPrompt(w http.ResponseWriter, r *http.Request) {
	row := promptFrom(r)
	version := row.DefaultVersion
	if raw := r.URL.Query().Get("version"); raw != "" {
		n, err := versionParam(raw, "version")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		version = n
	}
	_, doc, err := s.document(r.Context(), row.ID, version)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := promptFromRow(row)
	out.Version, out.Document = &version, doc
	writeJSON(w, http.StatusOK, out)
}

func (s *server) patchPrompt(w http.ResponseWriter, r *http.Request) {
	cur := promptFrom(r)
	var in promptPatch
	if !s.decode(w, r, &in) {
		return
	}
	next := dbsqlc.UpdatePromptParams{ID: cur.ID, Name: cur.Name, Description: cur.Description, Tags: cur.Tags, DefaultVersion: cur.DefaultVersion}
	if in.Name != nil {
		next.Name = *in.Name
	}
	if in.Description != nil {
		next.Description = *in.Description
	}
	if in.Tags != nil {
		next.Tags = *in.Tags
		if next.Tags == nil {
			next.Tags = []string{}
		}
	}
	var p bud.Problems
	checkPromptMeta(&p, "", next.Name, next.Description, next.Tags)
	if in.DefaultVersion != nil {
		next.DefaultVersion = *in.DefaultVersion
		if next.DefaultVersion < 1 || next.DefaultVersion > cur.LatestVersion {
			p.Add("default_version", "must be a saved version (1 to %d)", cur.LatestVersion)
		}
	}
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	var row dbsqlc.Prompt
	err := pgx.BeginTxFunc(r.Context(), s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		q := dbsqlc.New(tx)
		if in.DefaultVersion != nil {
			if _, err := q.GetPromptVersion(r.Context(), dbsqlc.GetPromptVersionParams{PromptID: cur.ID, Version: next.DefaultVersion}); err != nil {
				if errors.Is(err, pgx.ErrNoRows) {
					return fieldError("default_version", "is not a saved version")
				}
				return err
			}
		}
		var err error
		row, err = q.UpdatePrompt(r.Context(), next)
		return err
	})
	switch {
	case isSerializationFailure(err):
		s.writeError(w, r, errConcurrentUpdate("prompt"))
		return
	case errors.Is(err, pgx.ErrNoRows):
		s.writeError(w, r, notFound("prompt"))
		return
	case err != nil:
		var e *bud.Error
		if errors.As(err, &e) {
			s.writeError(w, r, err)
			return
		}
		s.writeError(w, r, saveError(err, "update prompt", promptNameConstraint, "prompt", next.Name))
		return
	}
	writeJSON(w, http.StatusOK, promptFromRow(row))
}

// deletePrompt removes the metadata first — versions and prompt
// deployments go with it — so nothing can read a half-deleted prompt; the
// documents are deleted after. Documents that fail to go are orphans no read
// can reach, and are logged.
func (s *server) deletePrompt(w http.ResponseWriter, r *http.Request) {
	row := promptFrom(r)
	var keys []string
	err := pgx.BeginFunc(r.Context(), s.pool, func(tx pgx.Tx) error {
		q := dbsqlc.New(tx)
		if _, err := q.LockPrompt(r.Context(), row.ID); err != nil {
			return err
		}
		var err error
		if keys, err = q.ListPromptVersionKeys(r.Context(), row.ID); err != nil {
			return err
		}
		_, err = q.DeletePrompt(r.Context(), row.ID)
		return err
	})
	if err != nil {
		s.writeError(w, r, lookupError(err, "prompt", "delete prompt"))
		return
	}
	if err := s.docs.DeleteMany(r.Context(), keys); err != nil {
		s.log.WarnContext(r.Context(), "prompt deleted; its documents were not", "prompt_id", row.ID, "keys", keys, "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) createVersion(w http.ResponseWriter, r *http.Request) {
	cur := promptFrom(r)
	var in versionInput
	if !s.decode(w, r, &in) {
		return
	}
	var p bud.Problems
	bud.CheckText(&p, "note", in.Note, maxNoteLen)
	if err := p.Err(); err != nil {
		s.writeError(w, r, err)
		return
	}
	prev, err := s.latestDocument(r.Context(), cur)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	_, canonical, err := s.parseDocument(r.Context(), cur.ProjectID, in.Document, "document.", prev)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var v dbsqlc.PromptVersion
	err = pgx.BeginFunc(r.Context(), s.pool, func(tx pgx.Tx) error {
		locked, err := dbsqlc.New(tx).LockPrompt(r.Context(), cur.ID)
		if err != nil {
			return lookupError(err, "prompt", "lock prompt")
		}
		_, v, err = s.saveVersion(r.Context(), tx, locked, canonical, in.Note, in.MakeDefault)
		return err
	})
	if err != nil {
		s.writeError(w, r, asAppError(err, "save prompt version"))
		return
	}
	w.Header().Set("Location", "/api/prompts/"+cur.ID.String()+"/versions/"+strconv.Itoa(int(v.Version)))
	writeJSON(w, http.StatusCreated, PromptVersion{PromptID: v.PromptID, Version: v.Version, Note: v.Note, CreatedAt: v.CreatedAt, Document: canonical})
}

func (s *server) listVersions(w http.ResponseWriter, r *http.Request) {
	cur := promptFrom(r)
	limit, offset, err := pageParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.q.ListPromptVersions(r.Context(), dbsqlc.ListPromptVersionsParams{PromptID: cur.ID, MaxRows: limit, SkipRows: offset})
	if err != nil {
		s.writeError(w, r, bud.Internal("list prompt versions", err))
		return
	}
	out := page[PromptVersion]{Data: make([]PromptVersion, 0, len(rows)), Limit: limit, Offset: offset}
	out.Total, err = s.q.CountPromptVersions(r.Context(), cur.ID)
	if err != nil {
		s.writeError(w, r, bud.Internal("count prompt versions", err))
		return
	}
	for _, v := range rows {
		out.Data = append(out.Data, PromptVersion{PromptID: v.PromptID, Version: v.Version, Note: v.Note, CreatedAt: v.CreatedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) versionFromPath(w http.ResponseWriter, r *http.Request) (dbsqlc.PromptVersion, []byte, bool) {
	cur := promptFrom(r)
	n, err := strconv.ParseInt(chi.URLParam(r, "version"), 10, 32)
	if err != nil || n < 1 {
		s.writeError(w, r, notFound("prompt version"))
		return dbsqlc.PromptVersion{}, nil, false
	}
	v, doc, err := s.document(r.Context(), cur.ID, int32(n))
	if err != nil {
		s.writeError(w, r, err)
		return v, nil, false
	}
	return v, doc, true
}

func (s *server) getVersion(w http.ResponseWriter, r *http.Request) {
	v, doc, ok := s.versionFromPath(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, PromptVersion{PromptID: v.PromptID, Version: v.Version, Note: v.Note, CreatedAt: v.CreatedAt, Document: doc})
}

// versionForm answers the sequential run form of a version's input.
func (s *server) versionForm(w http.ResponseWriter, r *http.Request) {
	v, raw, ok := s.versionFromPath(w, r)
	if !ok {
		return
	}
	doc, err := prompt.Parse(raw)
	if err != nil {
		s.writeError(w, r, bud.Internal("parse stored prompt document", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"prompt_id": v.PromptID, "version": v.Version, "steps": doc.Form()})
}

func (s *server) promptSchema(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/schema+json")
	_, _ = w.Write(prompt.Schema())
}

// latestDocument is the document of p's latest version, whose rule
// translations a new version may reuse; nil when it cannot be read as a
// document.
func (s *server) latestDocument(ctx context.Context, p dbsqlc.Prompt) (*prompt.Document, error) {
	if p.LatestVersion < 1 {
		return nil, nil
	}
	_, raw, err := s.document(ctx, p.ID, p.LatestVersion)
	if err != nil {
		return nil, err
	}
	doc, err := prompt.Parse(raw)
	if err != nil {
		return nil, nil // an old document no longer parses: nothing to reuse
	}
	return doc, nil
}
