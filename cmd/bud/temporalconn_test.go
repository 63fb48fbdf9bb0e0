package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testPKI is a CA, a server certificate it signed for "temporal.test" and
// 127.0.0.1 and a client certificate it signed, written as PEM files.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	server                    tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	issue := func(serial int64, name string, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		kder, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := testPKI{
		caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "client.pem"), keyFile: filepath.Join(dir, "client-key.pem"),
		pool: x509.NewCertPool(),
	}
	p.pool.AddCert(ca)
	require.NoError(t, os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600))
	certPEM, keyPEM := issue(2, "bud-worker", x509.ExtKeyUsageClientAuth)
	require.NoError(t, os.WriteFile(p.certFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(p.keyFile, keyPEM, 0o600))
	srvCert, srvKey := issue(3, "temporal.test", x509.ExtKeyUsageServerAuth)
	p.server, err = tls.X509KeyPair(srvCert, srvKey)
	require.NoError(t, err)
	return p
}

func TestTemporalSecurityPlaintextByDefault(t *testing.T) {
	var c config
	sec, err := c.temporalSecurity()
	require.NoError(t, err)
	require.Nil(t, sec.TLS)
	require.Nil(t, sec.Credentials)
}

func TestTemporalSecurityBuildsTLS(t *testing.T) {
	p := newTestPKI(t)
	c := config{TemporalTLSCert: p.certFile, TemporalTLSKey: p.keyFile, TemporalTLSCA: p.caFile, TemporalTLSServerName: "temporal.test", TemporalAPIKey: "key-1"}
	sec, err := c.temporalSecurity()
	require.NoError(t, err)
	require.NotNil(t, sec.TLS)
	require.Equal(t, "temporal.test", sec.TLS.ServerName)
	require.Len(t, sec.TLS.Certificates, 1)
	require.NotNil(t, sec.TLS.RootCAs)
	require.NotNil(t, sec.Credentials)

	opts := temporalClientOptions(slog.New(slog.NewTextHandler(io.Discard, nil)), "temporal.test:7233", "default", sec)
	require.Same(t, sec.TLS, opts.ConnectionOptions.TLS)
	require.NotNil(t, opts.Credentials)
}

func TestTemporalSecurityRefusesBadSettings(t *testing.T) {
	p := newTestPKI(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for name, tc := range map[string]struct {
		c    config
		want string
	}{
		"cert without key":  {config{TemporalTLSCert: p.certFile}, "TEMPORAL_TLS_KEY is not"},
		"key without cert":  {config{TemporalTLSKey: p.keyFile}, "TEMPORAL_TLS_CERT is not"},
		"unreadable cert":   {config{TemporalTLSCert: missing, TemporalTLSKey: p.keyFile}, "TEMPORAL_TLS_CERT:"},
		"unreadable key":    {config{TemporalTLSCert: p.certFile, TemporalTLSKey: missing}, "TEMPORAL_TLS_KEY:"},
		"mismatched pair":   {config{TemporalTLSCert: p.caFile, TemporalTLSKey: p.keyFile}, "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY"},
		"unreadable CA":     {config{TemporalTLSCA: missing}, "TEMPORAL_TLS_CA:"},
		"CA that is no PEM": {config{TemporalTLSCA: notPEM}, "TEMPORAL_TLS_CA: " + notPEM + " holds no PEM certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.c.temporalSecurity()
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestTemporalClientMutualTLS checks that a client built from the settings
// completes an mTLS handshake with a server that requires a client
// certificate from the same CA, verifies the server under
// TEMPORAL_TLS_SERVER_NAME, and sends the API key.
func TestTemporalClientMutualTLS(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	peers := make(chan string, 8)
	keys := make(chan string, 8)
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert,
			VerifyConnection: func(cs tls.ConnectionState) error {
				peers <- cs.PeerCertificates[0].Subject.CommonName
				return nil
			},
		})),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			if v := md.Get("authorization"); len(v) == 1 {
				keys <- v[0]
				return h(ctx, req)
			}
			return nil, status.Error(codes.Unauthenticated, "no API key")
		}),
	)
	hs := health.NewServer()
	hs.SetServingStatus("temporal.api.workflowservice.v1.WorkflowService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	workflowservice.RegisterWorkflowServiceServer(srv, systemInfoOnly{})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	c := config{TemporalTLSCert: p.certFile, TemporalTLSKey: p.keyFile, TemporalTLSCA: p.caFile, TemporalTLSServerName: "temporal.test", TemporalAPIKey: "key-1"}
	sec, err := c.temporalSecurity()
	require.NoError(t, err)
	tc, err := dialTemporal(slog.New(slog.NewTextHandler(io.Discard, nil)), ln.Addr().String(), "default", sec, nil)
	require.NoError(t, err)
	defer tc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = tc.CheckHealth(ctx, &client.CheckHealthRequest{})
	require.NoError(t, err)
	require.Equal(t, "bud-worker", <-peers)
	require.Equal(t, "Bearer key-1", <-keys)
}

// systemInfoOnly answers the one call a client makes when it connects.
type systemInfoOnly struct {
	workflowservice.UnimplementedWorkflowServiceServer
}

func (systemInfoOnly) GetSystemInfo(context.Context, *workflowservice.GetSystemInfoRequest) (*workflowservice.GetSystemInfoResponse, error) {
	return &workflowservice.GetSystemInfoResponse{}, nil
}
