// Package statestoretest gives a test binary one Store on the shared daprd
// of package daprdtest. A package that uses it runs its tests through Main
// so the Store is closed, daprd stopped and its database dropped at the end:
//
//	func TestMain(m *testing.M) { os.Exit(statestoretest.Main(m)) }
package statestoretest

import (
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/budhq/bud/daprd/daprdtest"
	"github.com/budhq/bud/statestore"
)

// Document is a prompt document as BudApp writes it: its key order, spacing,
// template markup and an integer beyond 2^53 must all survive a round trip.
const Document = `{"deployment": "gpt-small",
  "model_params": {"temperature": 0.2, "seed": 9007199254740993},
  "system_prompt": "Answer <b>briefly</b> & politely.",
  "messages": [{"role": "user", "content": "{{ input }}"}]}`

// NewKey returns the key of version 1 of a new prompt, so no other test
// uses it.
func NewKey() string { return statestore.DocumentKey(uuid.New(), 1) }

// shared is per test binary, like the daprd it talks to.
var shared struct {
	once  sync.Once
	err   error
	store *statestore.Store
}

// Main runs the tests through daprdtest.Main, then closes the shared Store.
// It returns the exit code of the tests.
func Main(m *testing.M) int {
	code := daprdtest.Main(m)
	if shared.store != nil {
		_ = shared.store.Close()
	}
	return code
}

// Store returns the shared Store, on the shared daprd, starting daprd on
// first use. Without a built daprd it skips the test, except under CI,
// where it fails.
func Store(tb testing.TB) *statestore.Store {
	tb.Helper()
	sidecar := daprdtest.Sidecar(tb)
	shared.once.Do(func() {
		shared.store, shared.err = statestore.NewStore(sidecar.GRPCAddr(), statestore.StoreName, statestore.WithAPIToken(sidecar.APIToken()))
	})
	if shared.err != nil {
		tb.Fatalf("statestoretest: %v", shared.err)
	}
	return shared.store
}
