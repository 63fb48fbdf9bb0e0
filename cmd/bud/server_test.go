package main

import (
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestServersBoundSlowClients(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	h := http.NotFoundHandler()

	for _, name := range []string{"app", "worker"} {
		l, err := listen(name, "127.0.0.1:0", h)
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.ln.Close() })
		srv := newServer(l, log)
		require.Positive(t, srv.ReadHeaderTimeout, name)
		require.Positive(t, srv.ReadTimeout, name)
		require.Positive(t, srv.WriteTimeout, name)
		require.Positive(t, srv.IdleTimeout, name)
		require.NotNil(t, srv.ErrorLog, name)
	}

	l, err := listenGateway("127.0.0.1:0", h)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.ln.Close() })
	srv := newServer(l, log)
	require.Positive(t, srv.ReadHeaderTimeout)
	require.Positive(t, srv.ReadTimeout, "a body that trickles in is cut off")
	require.Positive(t, srv.IdleTimeout)
	require.Zero(t, srv.WriteTimeout, "a write deadline would cut off a model's stream")
}
