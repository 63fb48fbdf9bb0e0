package runstream

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startTimeout bounds how long StartServer waits for the server to listen.
const startTimeout = 10 * time.Second

// Server is a NATS server embedded in the process, for `bud dev` and tests:
// core NATS only (no JetStream, no clustering). It accepts only clients
// that give user ServerUser and the password made for this start, which
// only URL tells; it has no TLS, so it listens on loopback only.
type Server struct {
	ns       *server.Server
	addr     string
	password string
}

// ServerUser is the one user of an embedded server.
const ServerUser = "bud"

// StartServer starts an embedded NATS server on addr (host:port on a
// loopback address; port 0 picks a free one) with a fresh random password,
// and returns once it accepts connections. A taken port fails at once with
// an error naming it.
func StartServer(addr string) (*Server, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("nats server: %q is not host:port: %w", addr, err)
	}
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("nats server: %s is not a loopback address; the embedded server has no TLS", host)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("nats server: %q has no valid port", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server reads 0 as its default port, 4222
	}
	// 128 random bits: nothing to guess, and URL-safe as it is.
	password := rand.Text()
	ns, err := server.NewServer(&server.Options{
		ServerName: "bud-dev",
		Host:       host,
		Port:       port,
		Username:   ServerUser,
		Password:   password,
		NoLog:      true,
		NoSigs:     true,
		// No HTTP monitoring, no cluster, no JetStream: the zero values.
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	fatal := &fatalLogger{ch: make(chan string, 1)}
	ns.SetLogger(fatal, false, false)
	ns.Start()

	ready := make(chan bool, 1)
	go func() { ready <- ns.ReadyForConnections(startTimeout) }()
	select {
	case ok := <-ready:
		if !ok {
			ns.Shutdown()
			return nil, fmt.Errorf("nats server: not ready on %s after %s", addr, startTimeout)
		}
	case msg := <-fatal.ch:
		ns.Shutdown()
		return nil, fmt.Errorf("nats server: cannot listen on %s: %s", addr, msg)
	}
	a, ok := ns.Addr().(*net.TCPAddr)
	if !ok {
		ns.Shutdown()
		return nil, errors.New("nats server: no listener")
	}
	return &Server{ns: ns, addr: net.JoinHostPort(host, strconv.Itoa(a.Port)), password: password}, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.addr }

// URL is what clients connect with, nats://bud:password@host:port: it holds
// the password, so print it only redacted (bud.RedactURLs).
func (s *Server) URL() string {
	return (&neturl.URL{Scheme: "nats", User: neturl.UserPassword(ServerUser, s.password), Host: s.addr}).String()
}

// Shutdown closes every connection and the listener, and returns once the
// server has stopped. Calling it again does nothing.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// fatalLogger keeps the server quiet but for a fatal error, which it hands
// to StartServer: the server reports a port it cannot take only that way.
type fatalLogger struct {
	once sync.Once
	ch   chan string
}

func (l *fatalLogger) Fatalf(format string, v ...any) {
	l.once.Do(func() { l.ch <- fmt.Sprintf(format, v...) })
}
func (*fatalLogger) Noticef(string, ...any) {}
func (*fatalLogger) Warnf(string, ...any)   {}
func (*fatalLogger) Errorf(string, ...any)  {}
func (*fatalLogger) Debugf(string, ...any)  {}
func (*fatalLogger) Tracef(string, ...any)  {}
