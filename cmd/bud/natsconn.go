package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/budhq/bud/runstream"
)

// connectNATS connects to BUD_NATS_URL with BUD_NATS_CREDS and the
// BUD_NATS_TLS_* settings, or returns nil when it is empty: the service
// then runs without streaming.
func connectNATS(log *slog.Logger, cfg *config, service string) (*nats.Conn, error) {
	if cfg.NATSURL == "" {
		if cfg.natsSecured() {
			return nil, errors.New("BUD_NATS_CREDS and BUD_NATS_TLS_* are set but BUD_NATS_URL is not: they are for the NATS server it names")
		}
		if service == "worker" {
			// Gateways that have NATS wait for runs' announcements.
			log.Warn("BUD_NATS_URL is not set: streaming prompt runs are off, and gateways hear of a run's answer only by asking, 2 s after its start", "service", service)
		} else {
			log.Warn("BUD_NATS_URL is not set: streaming prompt runs are off", "service", service)
		}
		return nil, nil
	}
	opts, err := cfg.natsSecurity()
	if err != nil {
		return nil, err
	}
	return runstream.Connect(cfg.NATSURL, append(opts,
		nats.Name("bud-"+service),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		// The URLs hold the password or token: the logger redacts them
		// (redactingHandler), as it does every URL.
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrl()) }),
		// The connection retries in the background, so a refused
		// credential or certificate shows only here.
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats connect failed", "url", cfg.NATSURL, "err", err)
		}),
	)...)
}

// natsSecured reports whether any of BUD_NATS_CREDS and BUD_NATS_TLS_* is
// set.
func (c *config) natsSecured() bool {
	return c.NATSCreds != "" || c.NATSTLSCA != "" || c.NATSTLSCert != "" || c.NATSTLSKey != ""
}

// natsSecurity is the client's credentials and TLS for BUD_NATS_URL's
// servers, from BUD_NATS_CREDS and BUD_NATS_TLS_*: any TLS setting turns
// TLS on (a tls:// URL does too, against the system roots), and a client
// certificate makes it mutual. A missing or unreadable file, a half-given
// key pair or a credentials file without its JWT or seed fails here,
// naming the setting, rather than at the first connection. A user and
// password or a token go in the URL itself.
func (c *config) natsSecurity() ([]nats.Option, error) {
	var opts []nats.Option
	if c.NATSCreds != "" {
		b, err := os.ReadFile(c.NATSCreds)
		if err != nil {
			return nil, fmt.Errorf("BUD_NATS_CREDS: %w", err)
		}
		if _, err := nkeys.ParseDecoratedJWT(b); err != nil {
			return nil, fmt.Errorf("BUD_NATS_CREDS: %s holds no user JWT: %w", c.NATSCreds, err)
		}
		kp, err := nkeys.ParseDecoratedNKey(b)
		if err != nil {
			return nil, fmt.Errorf("BUD_NATS_CREDS: %s holds no nkey seed: %w", c.NATSCreds, err)
		}
		kp.Wipe()
		// nats.go reads the file again at each connection, so a rotated
		// file is picked up.
		opts = append(opts, nats.UserCredentials(c.NATSCreds))
	}
	if c.NATSTLSCA == "" && c.NATSTLSCert == "" && c.NATSTLSKey == "" {
		return opts, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case c.NATSTLSCert != "" && c.NATSTLSKey == "":
		return nil, errors.New("BUD_NATS_TLS_CERT is set but BUD_NATS_TLS_KEY is not: a client certificate needs its key")
	case c.NATSTLSKey != "" && c.NATSTLSCert == "":
		return nil, errors.New("BUD_NATS_TLS_KEY is set but BUD_NATS_TLS_CERT is not: a client key needs its certificate")
	case c.NATSTLSCert != "":
		certPEM, err := os.ReadFile(c.NATSTLSCert)
		if err != nil {
			return nil, fmt.Errorf("BUD_NATS_TLS_CERT: %w", err)
		}
		keyPEM, err := os.ReadFile(c.NATSTLSKey)
		if err != nil {
			return nil, fmt.Errorf("BUD_NATS_TLS_KEY: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("BUD_NATS_TLS_CERT and BUD_NATS_TLS_KEY: not a matching PEM certificate and key: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	if c.NATSTLSCA != "" {
		caPEM, err := os.ReadFile(c.NATSTLSCA)
		if err != nil {
			return nil, fmt.Errorf("BUD_NATS_TLS_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("BUD_NATS_TLS_CA: %s holds no PEM certificate", c.NATSTLSCA)
		}
		conf.RootCAs = pool
	}
	return append(opts, nats.Secure(conf)), nil
}
