package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/db/dbsqlc"
)

// connectionNameConstraint makes connection names unique within a project.
const connectionNameConstraint = "connections_project_name_key"

// connectionTimeout bounds listing a connection's tools: each request of
// the HTTP client, and the whole exchange (an MCP session takes several).
const connectionTimeout = 15 * time.Second

// Connection is a connection as the API shows it: its settings, and of its
// credentials only which there are.
type Connection struct {
	ID          uuid.UUID             `json:"id"`
	ProjectID   uuid.UUID             `json:"project_id"`
	Name        string                `json:"name"`
	Kind        string                `json:"kind"`
	Config      connection.Config     `json:"config"`
	Credentials ConnectionCredentials `json:"credentials"`
	CreatedAt   time.Time             `json:"created_at"`
	UpdatedAt   time.Time             `json:"updated_at"`
}

// ConnectionCredentials says which credentials a connection holds, never
// their values.
type ConnectionCredentials struct {
	// Headers are the names of the credential headers, sorted.
	Headers []string `json:"headers"`
	// Token reports whether a token is set.
	Token bool `json:"token"`
	// Error says the stored credentials do not open with this server's
	// encryption key, so Headers and Token are unknown: they were sealed
	// under another key (`bud rotate-key` reseals them). Setting them again
	// with PATCH mends the connection.
	Error string `json:"error,omitempty"`
}

// credentialsUnreadable is what the API says of credentials that do not
// open with the server's key.
const credentialsUnreadable = "the stored credentials do not open with this server's encryption key (BUD_ENCRYPTION_KEY): they were sealed under another key; send them again with PATCH"

// ConnectionTool is one tool a connection offers now.
type ConnectionTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// connectionTools is the body of GET .../connections/{id}/tools.
type connectionTools struct {
	Data         []ConnectionTool `json:"data"`
	ConnectionID uuid.UUID        `json:"connection_id"`
}

// connectionInput is the body of POST .../connections.
type connectionInput struct {
	Name        string                  `json:"name"`
	Kind        string                  `json:"kind"`
	Config      *connection.Config      `json:"config"`
	Credentials *connection.Credentials `json:"credentials"`
}

// connectionPatch is the body of PATCH .../connections/{id}. Absent (or
// null) fields keep their value; config and credentials replace the old
// ones whole, so {"credentials": {}} removes them.
type connectionPatch struct {
	Name *string `json:"name"`
	// Kind may be sent as it is, so that a client can PATCH back what it
	// read; changing it is refused.
	Kind        *string                 `json:"kind"`
	Config      *connection.Config      `json:"config"`
	Credentials *connection.Credentials `json:"credentials"`
}

// checkConnection normalises c and reports every problem of it at once.
func checkConnection(c *connection.Connection) error {
	c.Normalize()
	return c.Check()
}

// destinationMoved reports whether next sends a connection's requests
// anywhere but prev did, and names the field that moved. The whole URL
// counts, path included: servers on a shared host are told apart by path.
func destinationMoved(prev, next connection.Config) (string, bool) {
	switch {
	case prev.URL != next.URL:
		return "config.url", true
	case prev.BaseURL != next.BaseURL:
		return "config.base_url", true
	}
	return "", false
}

// hasCredentials reports whether creds hold any secret.
func hasCredentials(creds connection.Credentials) bool {
	return len(creds.Headers) > 0 || creds.Token != ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// sealCredentials seals creds bound to the connection's id (see
// connection.SealCredentials).
func (s *server) sealCredentials(id uuid.UUID, creds connection.Credentials) ([]byte, error) {
	sealed, err := connection.SealCredentials(s.box, id, creds)
	if err != nil {
		return nil, bud.Internal("seal connection credentials", err)
	}
	return sealed, nil
}

// openConnection turns a row into a connection with its credentials
// opened. Credentials that do not open are a conflict the caller can mend
// (credentialsUnreadable); anything else that fails is internal.
func (s *server) openConnection(row dbsqlc.Connection) (connection.Connection, error) {
	c, err := connection.FromRow(s.box, row)
	return c, openError(err)
}

// openError is the API's error for connection.FromRow's err.
func openError(err error) error {
	switch {
	case errors.Is(err, connection.ErrCredentialsUnreadable):
		return &bud.Error{Code: bud.ECONFLICT, Message: "connection: " + credentialsUnreadable,
			Fields: map[string]string{"credentials": credentialsUnreadable}}
	case err != nil:
		return bud.Internal("open connection", err)
	}
	return nil
}

// connectionFromRow is what the API shows of a row. Credentials that do not
// open are shown as such, so the connection can still be listed and mended.
func (s *server) connectionFromRow(row dbsqlc.Connection) (Connection, error) {
	c, err := connection.FromRow(s.box, row)
	creds := ConnectionCredentials{Headers: sortedKeys(c.Credentials.Headers), Token: c.Credentials.Token != ""}
	switch {
	case errors.Is(err, connection.ErrCredentialsUnreadable):
		s.log.Warn("connection credentials do not open", "connection_id", row.ID, "err", err)
		creds.Error = credentialsUnreadable
	case err != nil:
		return Connection{}, bud.Internal("open connection", err)
	}
	return Connection{
		ID:          row.ID,
		ProjectID:   row.ProjectID,
		Name:        row.Name,
		Kind:        row.Kind,
		Config:      c.Config,
		Credentials: creds,
		CreatedAt:   row.CreatedAt,
		UpdatedAt:   row.UpdatedAt,
	}, nil
}

func (s *server) createConnection(w http.ResponseWriter, r *http.Request) {
	project := projectFrom(r)
	var in connectionInput
	if !s.decode(w, r, &in) {
		return
	}
	// The id is chosen here, not by the database, because the credentials
	// are sealed bound to it before the row exists.
	c := connection.Connection{ID: uuid.New(), ProjectID: project.ID, Name: in.Name, Kind: in.Kind}
	if in.Config != nil {
		c.Config = *in.Config
	}
	if in.Credentials != nil {
		c.Credentials = *in.Credentials
	}
	if err := checkConnection(&c); err != nil {
		s.writeError(w, r, err)
		return
	}
	configJSON, err := json.Marshal(c.Config)
	if err != nil {
		s.writeError(w, r, bud.Internal("encode connection config", err))
		return
	}
	sealed, err := s.sealCredentials(c.ID, c.Credentials)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	row, err := s.q.CreateConnection(r.Context(), dbsqlc.CreateConnectionParams{
		ID:                c.ID,
		ProjectID:         project.ID,
		Name:              c.Name,
		Kind:              c.Kind,
		Config:            configJSON,
		CredentialsSealed: sealed,
	})
	switch {
	case isForeignKeyViolation(err):
		s.writeError(w, r, notFound("project"))
		return
	case err != nil:
		s.writeError(w, r, saveError(err, "create connection", connectionNameConstraint, "connection", c.Name))
		return
	}
	out, err := s.connectionFromRow(row)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/projects/"+project.ID.String()+"/connections/"+row.ID.String())
	writeJSON(w, http.StatusCreated, out)
}

func (s *server) listConnections(w http.ResponseWriter, r *http.Request) {
	project := projectFrom(r)
	limit, offset, err := pageParams(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	total, err := s.q.CountConnections(r.Context(), project.ID)
	if err != nil {
		s.writeError(w, r, bud.Internal("count connections", err))
		return
	}
	rows, err := s.q.ListConnections(r.Context(), dbsqlc.ListConnectionsParams{ProjectID: project.ID, SkipRows: offset, MaxRows: limit})
	if err != nil {
		s.writeError(w, r, bud.Internal("list connections", err))
		return
	}
	out := page[Connection]{Data: make([]Connection, 0, len(rows)), Total: total, Limit: limit, Offset: offset}
	for _, row := range rows {
		c, err := s.connectionFromRow(row)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out.Data = append(out.Data, c)
	}
	writeJSON(w, http.StatusOK, out)
}

// getConnectionRow reads the connection named by the path in the request's
// project.
func (s *server) getConnectionRow(ctx context.Context, q *dbsqlc.Queries, r *http.Request) (dbsqlc.Connection, error) {
	id, ok := pathID(r, "connection_id")
	if !ok {
		return dbsqlc.Connection{}, notFound("connection")
	}
	row, err := q.GetConnection(ctx, dbsqlc.GetConnectionParams{ProjectID: projectFrom(r).ID, ID: id})
	if err != nil {
		return row, lookupError(err, "connection", "get connection")
	}
	return row, nil
}

func (s *server) getConnection(w http.ResponseWriter, r *http.Request) {
	row, err := s.getConnectionRow(r.Context(), s.q, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.connectionFromRow(row)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) patchConnection(w http.ResponseWriter, r *http.Request) {
	if _, ok := pathID(r, "connection_id"); !ok {
		s.writeError(w, r, notFound("connection"))
		return
	}
	var in connectionPatch
	if !s.decode(w, r, &in) {
		return
	}
	// Read, merge and write in one repeatable-read transaction, so that a
	// concurrent PATCH fails instead of being silently undone.
	var row dbsqlc.Connection
	err := pgx.BeginTxFunc(r.Context(), s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		q := dbsqlc.New(tx)
		cur, err := s.getConnectionRow(r.Context(), q, r)
		if err != nil {
			return err
		}
		c, err := connection.FromRow(s.box, cur)
		if errors.Is(err, connection.ErrCredentialsUnreadable) && in.Credentials != nil {
			err = nil // replaced below
		}
		if err != nil {
			return openError(err)
		}
		if in.Kind != nil && *in.Kind != cur.Kind {
			return fieldError("kind", "cannot be changed; create a new connection")
		}
		if in.Name != nil {
			c.Name = *in.Name
		}
		prev := c.Config
		if in.Config != nil {
			c.Config = *in.Config
		}
		sealed := cur.CredentialsSealed
		if in.Credentials != nil {
			c.Credentials = *in.Credentials
		}
		// The merged connection is checked whole: new settings must suit
		// the credentials kept, and the other way round.
		if err := checkConnection(&c); err != nil {
			return err
		}
		// Kept credentials follow the connection only where they were
		// given for; else whoever moves it could read them there.
		if field, moved := destinationMoved(prev, c.Config); moved && in.Credentials == nil && hasCredentials(c.Credentials) {
			return secretRequired("credentials",
				"must be sent again when "+field+" changes: stored credentials are never sent anywhere they were not given for")
		}
		if in.Credentials != nil {
			if sealed, err = s.sealCredentials(c.ID, c.Credentials); err != nil {
				return err
			}
		}
		configJSON, err := json.Marshal(c.Config)
		if err != nil {
			return bud.Internal("encode connection config", err)
		}
		row, err = q.UpdateConnection(r.Context(), dbsqlc.UpdateConnectionParams{
			ProjectID:         cur.ProjectID,
			ID:                cur.ID,
			Name:              c.Name,
			Config:            configJSON,
			CredentialsSealed: sealed,
		})
		switch {
		case db.IsNoRows(err):
			return notFound("connection")
		case err != nil:
			return saveError(err, "update connection", connectionNameConstraint, "connection", c.Name)
		}
		return nil
	})
	if isSerializationFailure(err) {
		err = errConcurrentUpdate("connection")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.connectionFromRow(row)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) deleteConnection(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "connection_id")
	if !ok {
		s.writeError(w, r, notFound("connection"))
		return
	}
	n, err := s.q.DeleteConnection(r.Context(), dbsqlc.DeleteConnectionParams{ProjectID: projectFrom(r).ID, ID: id})
	if err != nil {
		s.writeError(w, r, bud.Internal("delete connection", err))
		return
	}
	if n == 0 {
		s.writeError(w, r, notFound("connection"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listConnectionTools opens the connection and lists what it offers now.
func (s *server) listConnectionTools(w http.ResponseWriter, r *http.Request) {
	row, err := s.getConnectionRow(r.Context(), s.q, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	c, err := s.openConnection(row)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), connectionTimeout)
	defer cancel()
	client, err := connection.Open(ctx, c, connection.Options{HTTPClient: s.connections})
	if err != nil {
		s.writeError(w, r, connectionError(err, "open connection"))
		return
	}
	tools, err := client.Tools(ctx)
	if cerr := client.Close(); cerr != nil {
		// The list is in hand; a session that did not end cleanly is the
		// far end's business, worth a line in the log only.
		s.log.WarnContext(ctx, "close connection", "connection_id", row.ID, "request_id", requestIDFrom(ctx), "err", cerr)
	}
	if err != nil {
		s.writeError(w, r, connectionError(err, "list connection tools"))
		return
	}
	out := connectionTools{Data: make([]ConnectionTool, 0, len(tools)), ConnectionID: row.ID}
	for _, t := range tools {
		// Every client fills InputSchema ({"type":"object"} at the least).
		out.Data = append(out.Data, ConnectionTool{Name: t.Name, Description: t.Description, InputSchema: t.InputSchema})
	}
	writeJSON(w, http.StatusOK, out)
}

// connectionError maps a failure to reach a connection. What the far end
// did is not our fault, so none is a 500: a server that cannot be reached
// or is down is a 503; one that refuses the credentials, or the request,
// refuses the caller's data, a 422. Messages from package connection hold
// no credential values.
func connectionError(err error, op string) error {
	var e *connection.Error
	if !errors.As(err, &e) {
		return bud.Internal(op, err)
	}
	switch e.Reason {
	case connection.ReasonUnreachable:
		return bud.Errorf(bud.EUNAVAILABLE, "the connection could not be reached: %s", e.Message)
	case connection.ReasonUnavailable:
		return bud.Errorf(bud.EUNAVAILABLE, "the connection's server is unavailable, try again later: %s", e.Message)
	case connection.ReasonUnauthorized:
		return bud.Errorf(bud.EUNPROCESSABLE, "the connection's server refused its credentials: %s", e.Message)
	default: // connection.ReasonRejected
		return bud.Errorf(bud.EUNPROCESSABLE, "the connection's server rejected the request: %s", e.Message)
	}
}

// connectionExists is the prompt validator's check of a connection id: one
// of the project's connections. A failed lookup is kept in *lookupErr.
func (s *server) connectionExists(ctx context.Context, projectID uuid.UUID, lookupErr *error) func(string) bool {
	return func(id string) bool {
		cid, err := uuid.Parse(id)
		if err != nil {
			return false
		}
		found, err := s.q.ConnectionExists(ctx, dbsqlc.ConnectionExistsParams{ProjectID: projectID, ID: cid})
		if err != nil {
			*lookupErr = err
			return false
		}
		return found
	}
}
