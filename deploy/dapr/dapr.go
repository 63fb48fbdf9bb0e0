// Package dapr holds the Dapr resources Bud runs with. They are the files to
// deploy; they are embedded so that `bud dev` and the tests start daprd with
// exactly what production loads.
package dapr

import "embed"

// Components is the components/ directory: one YAML file per Dapr component.
// The files read their settings from daprd's environment (envRef), so they
// hold no secrets and need no templating.
//
//go:embed components/*.yaml
var Components embed.FS

// StateStoreName is the name of the state store component that keeps prompt
// documents (components/statestore.yaml).
const StateStoreName = "bud-prompts"

// Variables the state store component reads from daprd's environment.
const (
	// EnvDatabaseURL is the Postgres connection string of the state store.
	EnvDatabaseURL = "BUD_STATESTORE_DATABASE_URL"
	// EnvTablePrefix prefixes the state table's name ("" gives table "state").
	EnvTablePrefix = "BUD_STATESTORE_TABLE_PREFIX"
)

// daprd's API token: daprd reads it from EnvAPIToken and then refuses every
// API call that does not carry it under APITokenHeader (an HTTP header, or
// gRPC metadata).
const (
	EnvAPIToken    = "DAPR_API_TOKEN"
	APITokenHeader = "dapr-api-token"
)
