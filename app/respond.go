package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db"
)

// codeMethodNotAllowed is the one error code of this API that is not a bud
// code: a wrong method is a routing matter, not a domain one.
const codeMethodNotAllowed = "method_not_allowed"

// statusOf is the one map from error code to HTTP status.
func statusOf(code string) int {
	switch code {
	case bud.EINVALID:
		return http.StatusBadRequest
	case bud.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case bud.ENOTFOUND:
		return http.StatusNotFound
	case bud.ECONFLICT:
		return http.StatusConflict
	case bud.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case bud.EUNPROCESSABLE:
		return http.StatusUnprocessableEntity
	case bud.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	default:
		return http.StatusInternalServerError
	}
}

// errorBody is the envelope of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string            `json:"code"`
	Message   string            `json:"message"`
	Fields    map[string]string `json:"fields,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
}

// writeJSON sends v as the JSON body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	// Messages quote rules such as "must be > 0"; nothing here is embedded
	// in HTML, so they stay legible.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Every response type here encodes; failing to is a bug, and the
		// recoverer logs it and answers 500.
		panic(fmt.Sprintf("app: encode %T: %v", v, err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A failed write means the caller has gone; there is no one to tell.
	_, _ = w.Write(body.Bytes())
}

// writeError sends err in the envelope. An internal error is logged with its
// cause and the request id; the caller gets only the id.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := bud.ErrorCode(err)
	d := errorDetail{Code: code, Message: bud.ErrorMessage(err), Fields: bud.ErrorFields(err)}
	if code == bud.EINTERNAL {
		id := requestIDFrom(r.Context())
		s.log.ErrorContext(r.Context(), "internal error", "request_id", id, "method", r.Method, "path", r.URL.Path, "err", err)
		d.Message = fmt.Sprintf("internal error (request id %s)", id)
		d.RequestID = id
	}
	writeJSON(w, statusOf(code), errorBody{Error: d})
}

// decode reads the JSON object in r's body into v. On failure it has already
// answered, and the handler just returns.
func (s *server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := s.readJSON(w, r, v); err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

func (s *server) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return bud.Errorf(bud.ETOOLARGE, "the request body must be at most %d bytes", tooLarge.Limit)
	case err != nil:
		return bud.Errorf(bud.EINVALID, "the request body could not be read")
	case len(bytes.TrimSpace(data)) == 0:
		return bud.Errorf(bud.EINVALID, "a JSON request body is required")
	case !isJSON(r.Header.Get("Content-Type")):
		return bud.Errorf(bud.EINVALID, "Content-Type must be application/json")
	}
	return unmarshalStrict(data, v, "")
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// unmarshalStrict decodes the one JSON object in data into v, refusing
// unknown fields and trailing data. Problems name fields by their JSON path
// below prefix ("settings." for a nested document, say).
func unmarshalStrict(data []byte, v any, prefix string) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		if prefix == "" {
			return bud.Errorf(bud.EINVALID, "the request body must be a JSON object")
		}
		return fieldError(strings.TrimSuffix(prefix, "."), "must be an object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err, data, v, prefix)
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		rest := data[end:]
		end += int64(len(rest) - len(bytes.TrimLeft(rest, " \t\r\n")))
		return bud.Errorf(bud.EINVALID, "invalid JSON at offset %d: unexpected data after the object", end)
	}
	return nil
}

// jsonProblem turns a decoding error into the problem a caller can fix.
func jsonProblem(err error, data []byte, v any, prefix string) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return bud.Errorf(bud.EINVALID, "invalid JSON at offset %d: %s", syntax.Offset, syntax)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return bud.Errorf(bud.EINVALID, "invalid JSON at offset %d: unexpected end of input", len(data))
	case errors.As(err, &typ):
		field := strings.TrimSuffix(prefix+typ.Field, ".")
		if field == "" {
			return bud.Errorf(bud.EINVALID, "the request body must be a JSON object")
		}
		return fieldError(field, "must be "+jsonKind(typ.Type))
	}
	// encoding/json reports an unknown field by its bare name, without the
	// path to it, so the path is found by walking the document.
	if path := unknownFieldPath(data, reflect.TypeOf(v)); path != "" {
		return fieldError(prefix+path, "unknown field")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if unquoted, uerr := strconv.Unquote(name); uerr == nil {
			name = unquoted
		}
		return fieldError(prefix+name, "unknown field")
	}
	// What is left comes from a field's own decoding, which encoding/json
	// reports without the field; it is still the body's fault, not ours.
	return bud.Errorf(bud.EINVALID, "the request body could not be read: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// unknownFieldPath returns the JSON path of the first member of data (by
// sorted key, level by level) that t has no field for, or "".
func unknownFieldPath(data []byte, t reflect.Type) string {
	var doc any
	if json.Unmarshal(data, &doc) != nil {
		return ""
	}
	return findUnknown(doc, t, "")
}

func findUnknown(doc any, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if list, ok := doc.([]any); ok && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		base := strings.TrimSuffix(path, ".")
		for i, el := range list {
			if p := findUnknown(el, t.Elem(), fmt.Sprintf("%s[%d].", base, i)); p != "" {
				return p
			}
		}
		return ""
	}
	obj, ok := doc.(map[string]any)
	if !ok || t.Kind() != reflect.Struct {
		return ""
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := jsonField(t, k)
		if !ok {
			return path + k
		}
		if p := findUnknown(obj[k], f.Type, path+k+"."); p != "" {
			return p
		}
	}
	return ""
}

// jsonField finds the field encoding/json would decode key into, matching
// names without regard to case as it does.
func jsonField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		if f.Anonymous && tag == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if inner, ok := jsonField(ft, key); ok {
					return inner, true
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		name := tag
		if name == "" {
			name = f.Name
		}
		if strings.EqualFold(name, key) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// jsonKind names the JSON kind that decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "of another type"
	}
}

// isAbsent reports whether an optional raw JSON member was left out or null.
func isAbsent(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// fieldError is an EINVALID error about one field.
func fieldError(field, problem string) error {
	var p bud.Problems
	p.Add(field, "%s", problem)
	return p.Err()
}

// secretRequired is the error for a change that would send a stored
// secret somewhere new without it being sent again: the request is
// well-formed, but carrying the secret along would let whoever changes
// the destination read it there, so the secret's field must come with it.
func secretRequired(field, problem string) error {
	return &bud.Error{
		Code:    bud.EUNPROCESSABLE,
		Message: field + ": " + problem,
		Fields:  map[string]string{field: problem},
	}
}

// Pagination bounds.
const (
	defaultLimit = 50
	maxLimit     = 200
)

// page is one slice of a list and where it sits in the whole.
type page[T any] struct {
	Data   []T   `json:"data"`
	Total  int64 `json:"total"`
	Limit  int32 `json:"limit"`
	Offset int32 `json:"offset"`
}

// pageParams reads ?limit= (1..200, default 50) and ?offset= (>= 0,
// default 0).
func pageParams(r *http.Request) (limit, offset int32, err error) {
	var p bud.Problems
	limit, offset = defaultLimit, 0
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 1 || n > maxLimit {
			p.Add("limit", "must be an integer between 1 and %d", maxLimit)
		}
		limit = int32(n)
	}
	if s := q.Get("offset"); s != "" {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 0 {
			p.Add("offset", "must be an integer between 0 and %d", math.MaxInt32)
		}
		offset = int32(n)
	}
	return limit, offset, p.Err()
}

// pathID parses the UUID in the path parameter name. A malformed id names
// nothing, so the caller answers 404 as for any absent resource.
func pathID(r *http.Request, name string) (uuid.UUID, bool) {
	id, err := uuid.Parse(chi.URLParam(r, name))
	return id, err == nil
}

// notFound is the error for a resource that is absent or not the caller's.
func notFound(what string) error {
	return bud.Errorf(bud.ENOTFOUND, "%s not found", what)
}

// lookupError maps a failed single-row read: no row is a 404 for what.
func lookupError(err error, what, op string) error {
	if db.IsNoRows(err) {
		return notFound(what)
	}
	return bud.Internal(op, err)
}

// saveError maps a failed insert or update of a named resource: a clash on
// its unique-name constraint is a conflict on field name, anything else is
// internal.
func saveError(err error, op, constraint, what, name string) error {
	if c, ok := db.IsUniqueViolation(err); ok && c == constraint {
		return &bud.Error{
			Code:    bud.ECONFLICT,
			Message: fmt.Sprintf("a %s named %q already exists", what, name),
			Fields:  map[string]string{"name": "is already taken"},
		}
	}
	return bud.Internal(op, err)
}

// isForeignKeyViolation reports whether err is an insert that lost a race
// with the deletion of its parent row.
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}

// isSerializationFailure reports whether a repeatable-read transaction lost
// a race with a concurrent write to the same row.
func isSerializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40001"
}

// errConcurrentUpdate answers a PATCH that raced another write: applying it
// anyway would silently undo the other one.
func errConcurrentUpdate(what string) error {
	return bud.Errorf(bud.ECONFLICT, "the %s was changed by another request; fetch it and try again", what)
}
