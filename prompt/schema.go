package prompt

import (
	"bytes"
	_ "embed"
	"encoding/json"
)

//go:embed schema.json
var documentSchema []byte

// Schema returns the JSON Schema (draft 2020-12) of a prompt document, as
// published for editors and clients. It describes the document's shape and
// ranges; Validate checks the rest (templates, defaults against their
// variables, the project's deployments and connections). Each call returns a
// fresh copy.
func Schema() json.RawMessage { return bytes.Clone(documentSchema) }
