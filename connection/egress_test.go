package connection_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/connection"
	"github.com/budhq/bud/egress"
)

// egressOptions are Options whose client dials through policy deny.
func egressOptions(t *testing.T, deny string) connection.Options {
	t.Helper()
	p, err := egress.Parse(deny)
	require.NoError(t, err)
	return connection.Options{HTTPClient: &http.Client{Transport: p.Transport()}}
}

// An allowed API cannot send a call to the metadata address: the redirect
// is dialed through the same policy, and refused before any connection.
func TestHTTPRedirectToMetadataRefused(t *testing.T) {
	t.Parallel()
	api := newRecordingAPI(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	client, err := connection.Open(t.Context(), httpConnection(api.URL), egressOptions(t, ""))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	_, err = client.Call(t.Context(), "ping", nil)
	e := requireReason(t, err, connection.ReasonUnreachable)
	require.Contains(t, e.Message, "egress policy refuses 169.254.169.254")
	require.Equal(t, 1, api.count())
}

func TestHTTPLoopbackDenied(t *testing.T) {
	t.Parallel()
	api := newRecordingAPI(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	client, err := connection.Open(t.Context(), httpConnection(api.URL), egressOptions(t, "loopback"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	_, err = client.Call(t.Context(), "ping", nil)
	e := requireReason(t, err, connection.ReasonUnreachable)
	require.Contains(t, e.Message, "egress policy refuses 127.0.0.1 (loopback)")
	require.Zero(t, api.count())
}

// The MCP transports make their requests with the client of Options.
func TestMCPLoopbackDenied(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{connection.TransportStreamableHTTP, connection.TransportSSE} {
		url := serveMCP(t, newMCPServer(0), transport, "")
		_, err := connection.Open(t.Context(), mcpConnection(url, transport, nil), egressOptions(t, "loopback"))
		require.Error(t, err, transport)
		require.Contains(t, err.Error(), "egress policy refuses", transport)

		client, err := connection.Open(t.Context(), mcpConnection(url, transport, nil), egressOptions(t, ""))
		require.NoError(t, err, transport)
		_ = client.Close()
	}
}
