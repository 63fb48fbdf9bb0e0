package prompt

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestForm compares the run form of a variety of inputs with
// testdata/form/<name>.golden.json; go test -update rewrites them.
func TestForm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		input string
	}{
		{"text", `{"type": "text"}`},
		{"strings", `{"type": "structured", "variables": [
			{"name": "first_name", "type": "string", "required": true, "validation": {"basic": {"min_length": 1, "max_length": 50}}},
			{"name": "bio", "type": "string", "description": "A few words about you"},
			{"name": "summary", "type": "string", "validation": {"basic": {"max_length": 2000}}},
			{"name": "email", "type": "string", "validation": {"basic": {"format": "email"}}},
			{"name": "zipCode", "type": "string", "default": "75001", "validation": {"basic": {"max_length": 5, "pattern": "^[0-9]{5}$"}}}]}`},
		{"numbers", `{"type": "structured", "variables": [
			{"name": "age", "type": "integer", "required": true, "validation": {"basic": {"ge": 18, "le": 120}}},
			{"name": "score", "type": "number", "default": 2.5, "validation": {"basic": {"gt": 0, "lt": 10, "multiple_of": 0.5}}},
			{"name": "batch_size", "type": "integer", "default": 10, "validation": {"basic": {"multiple_of": 5}}}]}`},
		{"choices", `{"type": "structured", "variables": [
			{"name": "subscribed", "type": "boolean", "default": false},
			{"name": "plan", "type": "enum", "options": ["free", "pro", "team"], "default": "pro", "required": true}]}`},
		{"collections", `{"type": "structured", "variables": [
			{"name": "tags", "type": "array", "items": {"type": "string", "validation": {"basic": {"max_length": 20}}},
			 "default": ["news"], "validation": {"basic": {"min_items": 1, "max_items": 5}}},
			{"name": "shipping_address", "type": "object", "required": true, "variables": [
				{"name": "street", "type": "string", "required": true},
				{"name": "city", "type": "string", "required": true, "validation": {"basic": {"max_length": 80}}},
				{"name": "country", "type": "enum", "options": ["FR", "DE", "IN"], "default": "IN"}]},
			{"name": "contacts", "type": "array", "items": {"type": "object", "variables": [
				{"name": "userID", "type": "integer", "required": true},
				{"name": "primary", "type": "boolean"}]}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := mustParse(t, `{"deployment": "qwen3-32b", "system_prompt": "x", "input": `+tc.input+`}`)
			require.NoError(t, d.Validate(Checker{}))
			got, err := json.MarshalIndent(d.Form(), "", "  ")
			require.NoError(t, err)
			got = append(got, '\n')
			path := filepath.Join("testdata", "form", tc.name+".golden.json")
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "missing golden file; run go test -update")
			require.Equal(t, string(want), string(got))
		})
	}
}

func TestHumanize(t *testing.T) {
	t.Parallel()
	for name, label := range map[string]string{
		"first_name": "First name", "firstName": "First name", "userID": "User ID",
		"API_key": "API key", "address2": "Address 2", "x": "X", "_private": "Private", "HTMLBody": "HTML body",
	} {
		require.Equal(t, label, humanize(name), name)
	}
}
