package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"go.temporal.io/sdk/client"
)

// temporalSecurity is how a client authenticates to an external Temporal:
// TLS (with a client certificate for mTLS) and an API key. The zero value
// is a plaintext connection without credentials, which the embedded
// server of `bud dev` expects.
type temporalSecurity struct {
	// TLS is nil for plaintext.
	TLS *tls.Config
	// Credentials is nil without an API key.
	Credentials client.Credentials
}

// temporalSecurity builds the client security from TEMPORAL_TLS_CERT,
// TEMPORAL_TLS_KEY, TEMPORAL_TLS_CA, TEMPORAL_TLS_SERVER_NAME and
// TEMPORAL_API_KEY. Any TLS setting turns TLS on; an API key alone does
// too, verified against the system roots, so the key never crosses the
// network in the clear. A half-given key pair, an unreadable file or a CA
// without a certificate fails here, naming the setting, rather than at
// the first call.
func (c *config) temporalSecurity() (temporalSecurity, error) {
	var sec temporalSecurity
	if c.TemporalAPIKey != "" {
		sec.Credentials = client.NewAPIKeyStaticCredentials(c.TemporalAPIKey)
	}
	if c.TemporalTLSCert == "" && c.TemporalTLSKey == "" && c.TemporalTLSCA == "" && c.TemporalTLSServerName == "" {
		// The SDK turns TLS on for an API key by itself.
		return sec, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TemporalTLSServerName}
	switch {
	case c.TemporalTLSCert != "" && c.TemporalTLSKey == "":
		return sec, errors.New("TEMPORAL_TLS_CERT is set but TEMPORAL_TLS_KEY is not: a client certificate needs its key")
	case c.TemporalTLSKey != "" && c.TemporalTLSCert == "":
		return sec, errors.New("TEMPORAL_TLS_KEY is set but TEMPORAL_TLS_CERT is not: a client key needs its certificate")
	case c.TemporalTLSCert != "":
		certPEM, err := os.ReadFile(c.TemporalTLSCert)
		if err != nil {
			return sec, fmt.Errorf("TEMPORAL_TLS_CERT: %w", err)
		}
		keyPEM, err := os.ReadFile(c.TemporalTLSKey)
		if err != nil {
			return sec, fmt.Errorf("TEMPORAL_TLS_KEY: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return sec, fmt.Errorf("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY: not a matching PEM certificate and key: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	if c.TemporalTLSCA != "" {
		caPEM, err := os.ReadFile(c.TemporalTLSCA)
		if err != nil {
			return sec, fmt.Errorf("TEMPORAL_TLS_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return sec, fmt.Errorf("TEMPORAL_TLS_CA: %s holds no PEM certificate", c.TemporalTLSCA)
		}
		conf.RootCAs = pool
	}
	sec.TLS = conf
	return sec, nil
}
