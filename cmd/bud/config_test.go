package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/app"
)

const longAdminToken = "budadmin-0123456789abcdefghijklmnopqrstuv"

func TestAdminTokenShortRefused(t *testing.T) {
	c := config{AdminToken: "short-admin-token"}
	err := c.resolveAdminToken()
	require.Error(t, err)
	require.Contains(t, err.Error(), "at least 32 characters")
	require.NotContains(t, err.Error(), "short-admin-token", "the error must not echo the token")
}

func TestAdminTokenLongAccepted(t *testing.T) {
	c := config{AdminToken: longAdminToken}
	require.NoError(t, c.resolveAdminToken())
	require.Equal(t, longAdminToken, c.AdminToken)
}

func TestAdminTokenUnsetLeftEmpty(t *testing.T) {
	var c config
	require.NoError(t, c.resolveAdminToken())
	require.Empty(t, c.AdminToken)
}

func TestAdminTokenFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin-token")
	require.NoError(t, os.WriteFile(path, []byte("\n  "+longAdminToken+"\n"), 0o600))
	c := config{AdminTokenFile: path}
	require.NoError(t, c.resolveAdminToken())
	require.Equal(t, longAdminToken, c.AdminToken)
}

func TestAdminTokenFileShortRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin-token")
	require.NoError(t, os.WriteFile(path, []byte("too-short\n"), 0o600))
	c := config{AdminTokenFile: path}
	require.ErrorContains(t, c.resolveAdminToken(), "at least 32 characters")
}

func TestAdminTokenFileProblems(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte(" \n"), 0o600))
	for name, c := range map[string]config{
		"missing": {AdminTokenFile: filepath.Join(dir, "absent")},
		"empty":   {AdminTokenFile: empty},
		"both":    {AdminTokenFile: empty, AdminToken: longAdminToken},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.resolveAdminToken()
			require.Error(t, err)
			require.True(t, strings.Contains(err.Error(), "BUD_ADMIN_TOKEN_FILE"), err.Error())
		})
	}
}

func TestGeneratedAdminTokenLongEnough(t *testing.T) {
	require.GreaterOrEqual(t, len(newAdminToken()), app.MinAdminTokenLen)
}

// TestRunAppRefusesShortAdminToken checks the refusal comes at start,
// before any dependency is dialled.
func TestRunAppRefusesShortAdminToken(t *testing.T) {
	t.Setenv("BUD_ADMIN_TOKEN", "short")
	t.Setenv("BUD_ADMIN_TOKEN_FILE", "")
	err := runApp(t.Context(), nil)
	require.ErrorContains(t, err, "at least 32 characters")
}

func TestEmbeddedTemporalLoopbackOnly(t *testing.T) {
	c := config{TemporalAddress: "localhost:7233", TemporalUIAddr: "127.0.0.1:8233"}
	ip, port, uiPort, err := embeddedTemporalAddrs(&c)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", ip)
	require.Equal(t, 7233, port)
	require.Equal(t, 8233, uiPort)

	c = config{TemporalAddress: "[::1]:7233"}
	_, _, uiPort, err = embeddedTemporalAddrs(&c)
	require.NoError(t, err)
	require.Zero(t, uiPort)

	for _, tc := range []struct{ frontend, ui, want string }{
		{"0.0.0.0:7233", "", "TEMPORAL_ADDRESS: 0.0.0.0:7233 is not a loopback address"},
		{"192.0.2.1:7233", "", "TEMPORAL_ADDRESS: 192.0.2.1:7233 is not a loopback address"},
		{"temporal.example:7233", "", "TEMPORAL_ADDRESS: temporal.example:7233 is not a loopback address"},
		{"127.0.0.1:7233", "0.0.0.0:8233", "TEMPORAL_UI_ADDRESS: 0.0.0.0:8233 is not a loopback address"},
		{"127.0.0.1:7233", "[::]:8233", "TEMPORAL_UI_ADDRESS: [::]:8233 is not a loopback address"},
	} {
		c := config{TemporalAddress: tc.frontend, TemporalUIAddr: tc.ui}
		_, _, _, err := embeddedTemporalAddrs(&c)
		require.ErrorContains(t, err, tc.want)
	}
}
