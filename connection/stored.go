package connection

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/secrets"
)

// SealCredentials seals creds with box, bound to the connection's id, so
// that a sealed value copied into another row does not open. No
// credentials seal to nil.
func SealCredentials(box *secrets.Box, id uuid.UUID, creds Credentials) ([]byte, error) {
	if len(creds.Headers) == 0 && creds.Token == "" {
		return nil, nil
	}
	plain, err := json.Marshal(creds)
	if err != nil {
		return nil, fmt.Errorf("encode credentials: %w", err)
	}
	sealed := box.Seal(plain, id[:])
	clear(plain)
	return sealed, nil
}

// ErrCredentialsUnreadable is a connection whose stored credentials do not
// open with the key at hand: they were sealed under another one.
var ErrCredentialsUnreadable = errors.New("the credentials do not open with this encryption key")

// FromRow turns a stored connection into a Connection, its credentials
// opened with box. Credentials that do not open (the wrong key) are an
// ErrCredentialsUnreadable, with the rest of the connection filled in.
func FromRow(box *secrets.Box, row dbsqlc.Connection) (Connection, error) {
	c := Connection{ID: row.ID, ProjectID: row.ProjectID, Name: row.Name, Kind: row.Kind}
	if len(row.Config) > 0 {
		if err := json.Unmarshal(row.Config, &c.Config); err != nil {
			return c, fmt.Errorf("decode config of connection %s: %w", row.ID, err)
		}
	}
	if len(row.CredentialsSealed) == 0 {
		return c, nil
	}
	if box == nil {
		return c, fmt.Errorf("no key to open the credentials of connection %s: %w", row.ID, ErrCredentialsUnreadable)
	}
	plain, err := box.Open(row.CredentialsSealed, row.ID[:])
	if err != nil {
		return c, fmt.Errorf("open credentials of connection %s: %w: %w", row.ID, ErrCredentialsUnreadable, err)
	}
	err = json.Unmarshal(plain, &c.Credentials)
	clear(plain)
	if err != nil {
		return c, fmt.Errorf("decode credentials of connection %s: %w", row.ID, err)
	}
	return c, nil
}
