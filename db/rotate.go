package db

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/secrets"
)

// Resealed counts the values RotateKey re-sealed, by kind.
type Resealed struct {
	// Deployments is the number of provider API keys.
	Deployments int
	// Connections is the number of connections' credentials.
	Connections int
}

// ErrKeyMismatch is in the chain of RotateKey's error when a sealed value
// does not open under the key it was told is the current one.
var ErrKeyMismatch = errors.New("sealed values do not open under the current key")

// sealedValue is one sealed column of one row, and what it becomes.
type sealedValue struct {
	what   string // "deployment" or "connection", for messages
	id     uuid.UUID
	sealed []byte
}

// RotateKey re-seals every sealed value in the database — deployments'
// provider keys and connections' credentials, each bound to its row's id —
// from the key of from to the key of to, in one transaction. It opens every
// value before it writes any: when one does not open under from, it returns
// an error wrapping ErrKeyMismatch that names the rows (never their
// content), and nothing is changed.
//
// The transaction is repeatable read, so a concurrent write to a row being
// re-sealed makes it fail rather than be undone; rows inserted meanwhile by
// a service still on the old key are not seen, which is why services must
// be stopped while the key changes.
func RotateKey(ctx context.Context, pool *pgxpool.Pool, from, to *secrets.Box) (Resealed, error) {
	var n Resealed
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		q := dbsqlc.New(tx)
		deployments, err := q.ListSealedDeployments(ctx)
		if err != nil {
			return fmt.Errorf("list sealed deployments: %w", err)
		}
		connections, err := q.ListSealedConnections(ctx)
		if err != nil {
			return fmt.Errorf("list sealed connections: %w", err)
		}
		values := make([]sealedValue, 0, len(deployments)+len(connections))
		for _, d := range deployments {
			values = append(values, sealedValue{"deployment", d.ID, d.APIKeySealed})
		}
		for _, c := range connections {
			values = append(values, sealedValue{"connection", c.ID, c.CredentialsSealed})
		}

		// Everything is opened first, so that a bad value changes nothing
		// and the caller learns of every bad value at once.
		var bad []string
		for i, v := range values {
			plain, err := from.Open(v.sealed, v.id[:])
			if err != nil {
				bad = append(bad, v.what+" "+v.id.String())
				continue
			}
			values[i].sealed = to.Seal(plain, v.id[:])
			clear(plain)
		}
		if len(bad) > 0 {
			return fmt.Errorf("%w: %s; nothing was changed", ErrKeyMismatch, strings.Join(bad, ", "))
		}

		for _, v := range values {
			switch v.what {
			case "deployment":
				err = q.ResealDeployment(ctx, dbsqlc.ResealDeploymentParams{ID: v.id, APIKeySealed: v.sealed})
				n.Deployments++
			case "connection":
				err = q.ResealConnection(ctx, dbsqlc.ResealConnectionParams{ID: v.id, CredentialsSealed: v.sealed})
				n.Connections++
			}
			if err != nil {
				return fmt.Errorf("reseal %s %s: %w", v.what, v.id, err)
			}
		}
		return nil
	})
	if err != nil {
		return Resealed{}, fmt.Errorf("db: rotate key: %w", err)
	}
	return n, nil
}
