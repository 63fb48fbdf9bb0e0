// Package deployment resolves a project's deployments by name, for the
// gateway and the worker alike: a model deployment ready to call (its
// upstream's chat completions URL, its provider key opened, its default
// parameters decoded) and a prompt deployment ready to run (its prompt and
// version). A Cache keeps them in memory, dropped by the database's change
// notifications (package changes) with a TTL as a safety net.
package deployment

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/secrets"
)

// ErrNotFound is the error of a name that is no deployment of the project,
// or, from Cache.Model, no model deployment.
var ErrNotFound = errors.New("no such deployment")

// ErrProviderKey is wrapped by the error of a model deployment whose
// provider key cannot be opened: there is no secrets box, or the key was
// sealed with another. It is a configuration fault no retry mends.
var ErrProviderKey = errors.New("cannot open provider key")

// Deployment is a deployment ready to serve. One from a Cache is shared by
// every caller: it must not be modified.
type Deployment struct {
	ID        uuid.UUID
	ProjectID uuid.UUID
	// Name is what callers ask for: the `model` of a chat completion, the
	// prompt.id of a response.
	Name string
	// Kind is bud.KindModel or bud.KindPrompt.
	Kind      string
	CreatedAt time.Time
	// UpdatedAt is when the deployment last changed: with ID, it names
	// the deployment as it stands, so that a response cached before a
	// change is never served after it (replycache.Generation).
	UpdatedAt time.Time
	// Settings are how the deployment is served: its limits, its cache.
	// Fields its stored settings lack take bud.DefaultSettings().
	Settings bud.Settings

	// ChatURL is the upstream's chat completions endpoint (model
	// deployments): its base URL joined with "chat/completions".
	ChatURL string
	// CompletionsURL and EmbeddingsURL are the upstream's legacy
	// completions and embeddings endpoints, joined to its base URL as
	// ChatURL is.
	CompletionsURL, EmbeddingsURL string
	// UpstreamModel is the model name the upstream knows.
	UpstreamModel string
	// UpstreamModelJSON is UpstreamModel as a JSON string, encoded once for
	// request bodies written by hand.
	UpstreamModelJSON json.RawMessage
	// APIKey is the opened provider key, sent as a Bearer token; empty
	// when the deployment has none.
	APIKey string
	// Defaults are the deployment's default request parameters, each a
	// JSON value, by field name.
	Defaults map[string]json.RawMessage

	// PromptID is the prompt a prompt deployment serves.
	PromptID uuid.UUID
	// PromptVersion is the version it pins; nil follows the prompt's
	// default, which DefaultVersion holds (0 when the prompt is gone).
	PromptVersion  *int32
	DefaultVersion int32
}

// ChatURL is the chat completions endpoint of an upstream whose base URL
// (".../v1", with or without a trailing slash) is base.
func ChatURL(base string) string { return joinURL(base, "chat/completions") }

func joinURL(base, path string) string {
	for len(base) > 0 && base[len(base)-1] == '/' {
		base = base[:len(base)-1]
	}
	return base + "/" + path
}

// compile makes a deployment of its row. A prompt deployment's
// DefaultVersion is left to the caller, which reads the prompt.
func compile(row dbsqlc.Deployment, box *secrets.Box) (Deployment, error) {
	d := Deployment{ID: row.ID, ProjectID: row.ProjectID, Name: row.Name, Kind: row.Kind, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt, Settings: bud.DefaultSettings()}
	if len(row.Settings) > 0 {
		if err := json.Unmarshal(row.Settings, &d.Settings); err != nil {
			return Deployment{}, fmt.Errorf("deployment %s: settings: %w", row.ID, err)
		}
	}
	if row.Kind == bud.KindPrompt && row.PromptID != nil {
		d.PromptID, d.PromptVersion = *row.PromptID, row.PromptVersion
	}
	if row.Kind != bud.KindModel {
		return d, nil
	}
	d.ChatURL = ChatURL(row.BaseURL)
	d.CompletionsURL, d.EmbeddingsURL = joinURL(row.BaseURL, "completions"), joinURL(row.BaseURL, "embeddings")
	d.UpstreamModel = row.UpstreamModel
	d.UpstreamModelJSON, _ = json.Marshal(row.UpstreamModel) // a string always encodes
	if len(row.APIKeySealed) > 0 {
		if box == nil {
			return Deployment{}, fmt.Errorf("deployment %s: %w: no secrets box configured", row.ID, ErrProviderKey)
		}
		key, err := box.Open(row.APIKeySealed, row.ID[:])
		if err != nil {
			return Deployment{}, fmt.Errorf("deployment %s: %w: %w", row.ID, ErrProviderKey, err)
		}
		d.APIKey = string(key)
	}
	if len(row.DefaultParams) > 0 {
		if err := json.Unmarshal(row.DefaultParams, &d.Defaults); err != nil {
			return Deployment{}, fmt.Errorf("deployment %s: default params: %w", row.ID, err)
		}
	}
	return d, nil
}
