package main

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
)

// startNATS starts an in-process NATS server with opts on a free loopback
// port, shut down with t, and returns its host:port.
func startNATS(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	ns, err := server.NewServer(opts)
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	require.True(t, ns.ReadyForConnections(10*time.Second), "NATS not ready")
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ns.Addr().(*net.TCPAddr).Port))
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestNATSMutualTLSAndPassword: an external NATS that requires TLS, a
// client certificate and a password is reached with BUD_NATS_URL
// (user:password@), BUD_NATS_TLS_CA, BUD_NATS_TLS_CERT and
// BUD_NATS_TLS_KEY; without the client certificate, or without the CA, it
// is not.
func TestNATSMutualTLSAndPassword(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	addr := startNATS(t, &server.Options{
		Username: "bud", Password: "s3cret-pass",
		TLS: true, TLSVerify: true,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert},
	})
	cfg := config{NATSURL: "nats://bud:s3cret-pass@" + addr, NATSTLSCA: p.caFile, NATSTLSCert: p.certFile, NATSTLSKey: p.keyFile}
	nc, err := connectNATS(quiet, &cfg, "gateway")
	require.NoError(t, err)
	defer nc.Close()
	require.True(t, nc.IsConnected())
	state, err := nc.TLSConnectionState()
	require.NoError(t, err)
	require.True(t, state.HandshakeComplete)
	require.Equal(t, "temporal.test", state.PeerCertificates[0].Subject.CommonName, "the test CA's server certificate")
	require.NoError(t, nc.Flush())

	refused := func(c config) error {
		t.Helper()
		opts, err := c.natsSecurity()
		require.NoError(t, err)
		nc, err := nats.Connect(c.NATSURL, append(opts, nats.NoReconnect())...)
		if err == nil {
			nc.Close()
		}
		return err
	}
	noClientCert := cfg
	noClientCert.NATSTLSCert, noClientCert.NATSTLSKey = "", ""
	require.Error(t, refused(noClientCert), "mutual TLS: no client certificate, no connection")
	noCA := cfg
	noCA.NATSTLSCA = ""
	require.ErrorContains(t, refused(noCA), "certificate", "the server's certificate is checked against BUD_NATS_TLS_CA")
	wrongPassword := cfg
	wrongPassword.NATSURL = "nats://bud:nope@" + addr
	require.ErrorIs(t, refused(wrongPassword), nats.ErrAuthorization)
}

// lineWriter hands each write (one log line) to lines.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) {
	w <- string(p)
	return len(p), nil
}

// TestNATSRefusedCredentialsAreLoggedRedacted: a server that refuses
// BUD_NATS_URL's password is logged through the service's logger with
// the URL, whose password it never prints.
func TestNATSRefusedCredentialsAreLoggedRedacted(t *testing.T) {
	t.Parallel()
	addr := startNATS(t, &server.Options{Username: "bud", Password: "right-pass"})
	lines := make(lineWriter, 64)
	cfg := config{NATSURL: "nats://bud:wrong-pass-1234@" + addr, LogLevel: "info", LogFormat: "text"}
	log, err := cfg.logger(lines)
	require.NoError(t, err)
	nc, err := connectNATS(log, &cfg, "worker")
	require.NoError(t, err, "a refused connection is retried in the background")
	defer nc.Close()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line := <-lines:
			require.NotContains(t, line, "wrong-pass-1234")
			if strings.Contains(line, "nats connect failed") {
				require.Contains(t, line, "nats://REDACTED@"+addr)
				return
			}
		case <-deadline:
			t.Fatal("the refused connection was never logged")
		}
	}
}

// TestNATSCredsFile: an external NATS in operator mode (JWT accounts) is
// reached with the user credentials file of BUD_NATS_CREDS, and refuses a
// client without it.
func TestNATSCredsFile(t *testing.T) {
	t.Parallel()
	op, err := nkeys.CreateOperator()
	require.NoError(t, err)
	opPub, err := op.PublicKey()
	require.NoError(t, err)
	opJWT, err := jwt.NewOperatorClaims(opPub).Encode(op)
	require.NoError(t, err)
	opClaims, err := jwt.DecodeOperatorClaims(opJWT)
	require.NoError(t, err)

	acct, err := nkeys.CreateAccount()
	require.NoError(t, err)
	acctPub, err := acct.PublicKey()
	require.NoError(t, err)
	acctJWT, err := jwt.NewAccountClaims(acctPub).Encode(op)
	require.NoError(t, err)

	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	userPub, err := user.PublicKey()
	require.NoError(t, err)
	userJWT, err := jwt.NewUserClaims(userPub).Encode(acct)
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	require.NoError(t, err)
	credsFile := filepath.Join(t.TempDir(), "bud.creds")
	require.NoError(t, os.WriteFile(credsFile, creds, 0o600))

	resolver := &server.MemAccResolver{}
	require.NoError(t, resolver.Store(acctPub, acctJWT))
	addr := startNATS(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{opClaims}, AccountResolver: resolver, NoSystemAccount: true})

	cfg := config{NATSURL: "nats://" + addr, NATSCreds: credsFile}
	nc, err := connectNATS(quiet, &cfg, "worker")
	require.NoError(t, err)
	defer nc.Close()
	require.True(t, nc.IsConnected())
	require.NoError(t, nc.Flush())

	anonymous, err := nats.Connect("nats://"+addr, nats.NoReconnect())
	if err == nil {
		anonymous.Close()
	}
	require.Error(t, err, "no credentials, no connection")
}

// TestNATSSettingsCheckedAtStart: a file that is missing or is not what
// its setting says fails before any connection, naming the setting.
func TestNATSSettingsCheckedAtStart(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	require.NoError(t, os.WriteFile(junk, []byte("not a certificate"), 0o600))
	missing := filepath.Join(dir, "missing")
	url := "nats://127.0.0.1:1"
	for want, c := range map[string]config{
		"BUD_NATS_CREDS: open":                  {NATSURL: url, NATSCreds: missing},
		"BUD_NATS_CREDS: " + junk + " holds no": {NATSURL: url, NATSCreds: junk},
		"BUD_NATS_TLS_CA: open":                 {NATSURL: url, NATSTLSCA: missing},
		"BUD_NATS_TLS_CA: " + junk:              {NATSURL: url, NATSTLSCA: junk},
		"BUD_NATS_TLS_CERT: open":               {NATSURL: url, NATSTLSCert: missing, NATSTLSKey: p.keyFile},
		"BUD_NATS_TLS_KEY: open":                {NATSURL: url, NATSTLSCert: p.certFile, NATSTLSKey: missing},
		"not a matching PEM":                    {NATSURL: url, NATSTLSCert: p.caFile, NATSTLSKey: p.keyFile},
		"BUD_NATS_TLS_KEY is not":               {NATSURL: url, NATSTLSCert: p.certFile},
		"BUD_NATS_TLS_CERT is not":              {NATSURL: url, NATSTLSKey: p.keyFile},
		"BUD_NATS_URL is not":                   {NATSTLSCA: p.caFile},
	} {
		_, err := connectNATS(quiet, &c, "gateway")
		require.ErrorContains(t, err, want)
	}
}

// TestDevRefusesNATSSettingsForTheEmbeddedServer: BUD_NATS_CREDS and
// BUD_NATS_TLS_* name an external server's credentials; bud dev without
// BUD_NATS_URL refuses them rather than ignoring them.
func TestDevRefusesNATSSettingsForTheEmbeddedServer(t *testing.T) {
	t.Parallel()
	env := newDevEnv(t)
	cmd := exec.Command(budBinary, "dev")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+env.dbURL, "BUD_DATA_DIR="+env.dataDir,
		"BUD_NATS_URL=", "BUD_NATS_CREDS=/nonexistent.creds",
		"TEMPORAL_ADDRESS="+env.temporal, "TEMPORAL_UI_ADDRESS=", "BUD_NATS_ADDR="+env.nats)
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "are for an external NATS")
}
