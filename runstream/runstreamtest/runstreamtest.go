// Package runstreamtest starts an embedded NATS server for a test, as bud
// dev does, and connects to it.
package runstreamtest

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/budhq/bud/runstream"
)

// Start starts a NATS server on a free loopback port, shut down with t.
func Start(t testing.TB) *runstream.Server {
	t.Helper()
	srv, err := runstream.StartServer("127.0.0.1:0")
	if err != nil {
		t.Fatalf("start NATS: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// Connect connects to srv as the services do, closed with t.
func Connect(t testing.TB, srv *runstream.Server) *nats.Conn {
	t.Helper()
	nc, err := runstream.Connect(srv.URL())
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}
