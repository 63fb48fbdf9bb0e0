package statestore_test

import (
	"context"
	"os"
	"testing"

	"github.com/budhq/bud/daprd/daprdtest"
	"github.com/budhq/bud/statestore"
	"github.com/budhq/bud/statestore/statestoretest"
)

// The tests share one daprd and one Store on it.
func TestMain(m *testing.M) { os.Exit(statestoretest.Main(m)) }

// bundle is what a test works with.
type bundle struct {
	ctx   context.Context
	store *statestore.Store
	dbURL string // the database behind store
}

// setup returns the shared Store; without a built daprd it skips the test.
func setup(tb testing.TB) bundle {
	tb.Helper()
	return bundle{ctx: context.Background(), store: statestoretest.Store(tb), dbURL: daprdtest.DatabaseURL(tb)}
}
