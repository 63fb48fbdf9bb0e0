package app

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/wI2L/jsondiff"

	"github.com/budhq/bud"
)

// Change is one RFC 6902 (JSON Patch) operation that turns one JSON
// document into another: add, remove or replace at Path, a JSON Pointer
// (RFC 6901). Applied in order, a list of changes turns the first document
// into the second.
type Change struct {
	Op   string `json:"op"`
	Path string `json:"path"`
	// Value is what add or replace puts at Path (null is a value); absent
	// for remove.
	Value *json.RawMessage `json:"value,omitempty"`
	// OldValue is what replace or remove takes away from Path; absent for
	// add. It is not part of RFC 6902: it lets a reader see both sides.
	OldValue *json.RawMessage `json:"old_value,omitempty"`
}

// maxLCSCells bounds the table of one array comparison by longest common
// subsequence (its lengths multiplied); beyond it arrays are compared
// index by index, which needs no table.
const maxLCSCells = 1 << 22

// jsonChanges lists the changes from a to b, both JSON texts. Arrays are
// compared by their longest common subsequence, so one element inserted in
// the middle of a list is one add at its index, not a replace of every
// element after it. Numbers are kept as written, so an integer beyond 2^53
// shows as it is.
func jsonChanges(a, b []byte) ([]Change, error) {
	av, err := decodeNumbers(a)
	if err != nil {
		return nil, err
	}
	bv, err := decodeNumbers(b)
	if err != nil {
		return nil, err
	}
	var opts []jsondiff.Option
	if largestArray(av)*largestArray(bv) <= maxLCSCells {
		opts = append(opts, jsondiff.LCS())
	}
	patch, err := jsondiff.CompareWithoutMarshal(av, bv, opts...)
	if err != nil {
		return nil, err
	}
	out := make([]Change, 0, len(patch))
	for _, op := range patch {
		c := Change{Op: op.Type, Path: op.Path}
		switch op.Type {
		case jsondiff.OperationAdd:
			if c.Value, err = rawOf(op.Value); err != nil {
				return nil, err
			}
		case jsondiff.OperationReplace:
			if c.Value, err = rawOf(op.Value); err != nil {
				return nil, err
			}
			if c.OldValue, err = rawOf(op.OldValue); err != nil {
				return nil, err
			}
		case jsondiff.OperationRemove:
			if c.OldValue, err = rawOf(op.OldValue); err != nil {
				return nil, err
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// decodeNumbers decodes one JSON value, numbers as json.Number.
func decodeNumbers(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// largestArray is the length of the longest array in v, at any depth.
func largestArray(v any) int {
	n := 0
	switch v := v.(type) {
	case []any:
		n = len(v)
		for _, e := range v {
			n = max(n, largestArray(e))
		}
	case map[string]any:
		for _, e := range v {
			n = max(n, largestArray(e))
		}
	}
	return n
}

// rawOf is v as JSON; a nil v is JSON null, which is a value.
func rawOf(v any) (*json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	raw := json.RawMessage(b)
	return &raw, nil
}

// VersionDiff is the difference between two versions of a prompt: the
// changes that turn version From's document into version To's.
type VersionDiff struct {
	PromptID string   `json:"prompt_id"`
	From     int32    `json:"from_version"`
	To       int32    `json:"to_version"`
	Changes  []Change `json:"changes"`
}

// versionDiff answers GET /api/prompts/{prompt_id}/versions/{a}/diff/{b}:
// the changes from version a's document to version b's. A version that is
// not saved (or not a number) is a 404 naming the path parameter, as for
// any absent version.
func (s *server) versionDiff(w http.ResponseWriter, r *http.Request) {
	cur := promptFrom(r)
	var docs [2][]byte
	var nums [2]int32
	var missing bud.Problems
	for i, name := range []string{"a", "b"} {
		n, err := strconv.ParseInt(chi.URLParam(r, name), 10, 32)
		if err != nil || n < 1 {
			missing.Add(name, "is not a saved version of this prompt")
			continue
		}
		nums[i] = int32(n)
		_, doc, err := s.document(r.Context(), cur.ID, nums[i])
		switch {
		case bud.ErrorCode(err) == bud.ENOTFOUND:
			missing.Add(name, "is not a saved version of this prompt")
			continue
		case err != nil:
			s.writeError(w, r, err)
			return
		}
		docs[i] = doc
	}
	if len(missing) > 0 {
		s.writeError(w, r, &bud.Error{Code: bud.ENOTFOUND, Message: "prompt version not found: " + missing.String(), Fields: missing})
		return
	}
	changes, err := jsonChanges(docs[0], docs[1])
	if err != nil {
		s.writeError(w, r, bud.Internal("diff prompt versions", err))
		return
	}
	writeJSON(w, http.StatusOK, VersionDiff{PromptID: cur.ID.String(), From: nums[0], To: nums[1], Changes: changes})
}
