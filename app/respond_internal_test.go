package app

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

// picky refuses every value, as a field with its own decoding refuses a
// bad one; encoding/json reports that without the field.
type picky struct{}

func (*picky) UnmarshalJSON([]byte) error { return errors.New("not a picky value") }

// A value a field's own decoding refuses is the caller's 400, not a 500.
func TestJSONProblemOfAFieldsOwnDecoding(t *testing.T) {
	var v struct {
		P picky `json:"p"`
	}
	data := []byte(`{"p": 5}`)
	err := jsonProblem(json.Unmarshal(data, &v), data, &v, "")
	require.Equal(t, bud.EINVALID, bud.ErrorCode(err))
	require.Contains(t, bud.ErrorMessage(err), "not a picky value")
}
