package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/budhq/bud/activities"
	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/app"
	"github.com/budhq/bud/changes"
	"github.com/budhq/bud/console"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/deployment"
	"github.com/budhq/bud/egress"
	"github.com/budhq/bud/gateway"
	"github.com/budhq/bud/metrics"
	"github.com/budhq/bud/replycache"
	"github.com/budhq/bud/run"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/scaling"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/statestore"
	budusage "github.com/budhq/bud/usage"
	"github.com/budhq/bud/workflows"
)

// shutdownTimeout bounds how long servers get to finish in-flight requests.
const shutdownTimeout = 5 * time.Second

// listener is an address taken before anything is served, so a busy port
// fails the start with a clear message instead of a half-started process.
type listener struct {
	name string
	ln   net.Listener
	h    http.Handler
	// streams is set when h's responses may last as long as an upstream
	// model takes (see newServer).
	streams bool
}

func listen(name, addr string, h http.Handler) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot listen on %s: %w", name, addr, err)
	}
	return &listener{name: name, ln: ln, h: h}, nil
}

// listenGateway is listen for BudGateway, whose responses stream.
func listenGateway(addr string, h http.Handler) (*listener, error) {
	l, err := listen("gateway", addr, h)
	if err != nil {
		return nil, err
	}
	l.streams = true
	return l, nil
}

// Bounds on a client's connection, for every server bud starts. A slow
// client otherwise holds a connection, a goroutine and its buffers for as
// long as it likes.
const (
	// serverReadHeaderTimeout bounds reading a request's headers.
	serverReadHeaderTimeout = 10 * time.Second
	// serverReadTimeout bounds reading a whole request, body included: the
	// gateway's largest body (32 MiB) arrives within it at about 2 Mbit/s.
	serverReadTimeout = 2 * time.Minute
	// serverWriteTimeout bounds a whole response, from the end of its
	// request's headers, on servers whose responses do not stream.
	serverWriteTimeout = 2 * time.Minute
	// serverIdleTimeout bounds a keep-alive connection between requests.
	serverIdleTimeout = 2 * time.Minute
)

// newServer builds the server for l; every server bud starts is built
// here. A streaming listener gets no write timeout: net/http's write
// deadline covers the whole response from the end of the request's
// headers, so any bound would cut off a model's stream, or a reply that
// the upstream may take BUD_UPSTREAM_TIMEOUT (10 min) to begin. Those
// handlers end when the upstream does or the client goes away.
func newServer(l *listener, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           l.h,
		ReadHeaderTimeout: serverReadHeaderTimeout,
		ReadTimeout:       serverReadTimeout,
		WriteTimeout:      serverWriteTimeout,
		IdleTimeout:       serverIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if l.streams {
		srv.WriteTimeout = 0
	}
	return srv
}

func (l *listener) URL() string { return "http://" + l.ln.Addr().String() }

// serveAll serves every listener until ctx ends, then shuts them down
// gracefully. It returns the first serve error.
func serveAll(ctx context.Context, log *slog.Logger, ls ...*listener) error {
	errc := make(chan error, len(ls))
	servers := make([]*http.Server, len(ls))
	for i, l := range ls {
		srv := newServer(l, log)
		servers[i] = srv
		go func(l *listener) {
			if err := srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", l.name, err)
			}
		}(l)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func(srv *http.Server) {
			defer wg.Done()
			if serr := srv.Shutdown(sctx); serr != nil {
				_ = srv.Close()
			}
		}(srv)
	}
	wg.Wait()
	return err
}

// openDB opens the pool and, when migrate is set, applies migrations.
func openDB(ctx context.Context, log *slog.Logger, url string, migrate bool) (*pgxpool.Pool, error) {
	pool, err := db.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if migrate {
		if err := db.Migrate(ctx, pool, log); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return pool, nil
}

// dialTemporal returns a lazy client: services start even when Temporal is
// briefly down, and /readyz says so until it answers. sec is how it
// authenticates (see config.temporalSecurity); mh, when not nil, receives
// the SDK's metrics (a worker's slots and pollers among them).
func dialTemporal(log *slog.Logger, addr, namespace string, sec temporalSecurity, mh client.MetricsHandler) (client.Client, error) {
	opts := temporalClientOptions(log, addr, namespace, sec)
	opts.MetricsHandler = mh
	c, err := client.NewLazyClient(opts)
	if err != nil {
		return nil, fmt.Errorf("temporal client for %s: %w", addr, err)
	}
	return c, nil
}

// temporalClientOptions are the options of every client dialTemporal makes.
func temporalClientOptions(log *slog.Logger, addr, namespace string, sec temporalSecurity) client.Options {
	return client.Options{
		HostPort:    addr,
		Namespace:   namespace,
		Logger:      sdklog.NewStructuredLogger(log.With("component", "temporal-sdk")),
		Credentials: sec.Credentials,
		// The SDK gzips every request by default. Ours are small (a
		// document of a few KiB at most), so compressing them costs more
		// CPU than it saves bytes: a run makes about ten requests.
		ConnectionOptions: client.ConnectionOptions{GrpcCompression: &client.GrpcCompressionNone{}, TLS: sec.TLS},
	}
}

func temporalReady(c client.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	}
}

func sealBox(key string) (*secrets.Box, error) {
	if key == "" {
		return nil, errors.New("BUD_ENCRYPTION_KEY is required (a base64 32-byte key; `openssl rand -base64 32` makes one)")
	}
	k, err := secrets.ParseKey(key)
	if err != nil {
		return nil, fmt.Errorf("BUD_ENCRYPTION_KEY: %w", err)
	}
	return secrets.NewBox(k)
}

// newApp builds BudApp, whose metrics go to reg.
func newApp(log *slog.Logger, cfg *config, pool *pgxpool.Pool, tc client.Client, docs *statestore.Store, reg *prometheus.Registry, rec *budusage.Recorder) (http.Handler, error) {
	if cfg.AdminToken == "" {
		return nil, errors.New("BUD_ADMIN_TOKEN or BUD_ADMIN_TOKEN_FILE is required")
	}
	box, err := sealBox(cfg.EncryptionKey)
	if err != nil {
		return nil, err
	}
	rc, err := runsClient(tc, cfg)
	if err != nil {
		return nil, err
	}
	policy, err := egress.Parse(cfg.EgressDeny)
	if err != nil {
		return nil, fmt.Errorf("BUD_EGRESS_DENY: %w", err)
	}
	return app.New(app.Config{
		Pool:       pool,
		Box:        box,
		AdminToken: cfg.AdminToken,
		Logger:     log.With("service", "app"),
		Ready: func(ctx context.Context) error {
			if err := temporalReady(tc)(ctx); err != nil {
				return fmt.Errorf("temporal: %w", err)
			}
			if err := docs.Healthy(ctx); err != nil {
				return fmt.Errorf("dapr: %w", err)
			}
			return nil
		},
		Registry:  reg,
		Documents: docs,
		Runs:      rc,
		Egress:    policy,
		Usage:     rec,
		Console:   console.Handler(consoleOptions(cfg)),
	})
}

// consoleOptions are the addresses the web console shows: the gateway for a
// deployed prompt's curl and the Temporal UI for a run's workflow, as this
// process's configuration knows them.
func consoleOptions(cfg *config) console.Options {
	o := console.Options{GatewayURL: "http://" + cfg.GatewayAddr}
	if cfg.TemporalUIAddr != "" {
		o.TemporalUIURL = "http://" + cfg.TemporalUIAddr + "/namespaces/" + url.PathEscape(cfg.TemporalNamespace)
	}
	return o
}

// runsClient is the client through which BudApp and the gateway ask
// Temporal about runs, starting them the way BUD_RUN_WAIT says.
func runsClient(tc client.Client, cfg *config) (*runs.Client, error) {
	rc, err := runs.New(tc, cfg.RunWait)
	if err != nil || cfg.RunWait == "" {
		return nil, fmt.Errorf("BUD_RUN_WAIT: %q is neither %q nor %q", cfg.RunWait, runs.StartWithUpdate, runs.StartThenUpdate)
	}
	rc.Namespace = cfg.TemporalNamespace
	return rc, nil
}

// daprAddress is where `bud app` finds daprd: as configured, else where a
// Dapr sidecar injector says, else Dapr's default port.
func daprAddress(cfg *config) string {
	if cfg.DaprGRPCAddress != "" {
		return cfg.DaprGRPCAddress
	}
	if p := os.Getenv("DAPR_GRPC_PORT"); p != "" {
		return "127.0.0.1:" + p
	}
	return "127.0.0.1:50001"
}

// newGateway builds BudGateway, whose metrics go to reg.
func newGateway(log *slog.Logger, cfg *config, pool *pgxpool.Pool, tc client.Client, docs *statestore.Store, nc *nats.Conn, adm *admission.Admitter, cache *replycache.Cache, rec *budusage.Recorder, reg *prometheus.Registry) (*gateway.Gateway, error) {
	box, err := sealBox(cfg.EncryptionKey)
	if err != nil {
		return nil, err
	}
	timeout, err := time.ParseDuration(cfg.UpstreamTimeout)
	if err != nil || timeout <= 0 {
		return nil, fmt.Errorf("BUD_UPSTREAM_TIMEOUT: %q is not a positive duration such as 5m", cfg.UpstreamTimeout)
	}
	policy, err := egress.Parse(cfg.EgressDeny)
	if err != nil {
		return nil, fmt.Errorf("BUD_EGRESS_DENY: %w", err)
	}
	runsc, err := runsClient(tc, cfg)
	if err != nil {
		return nil, err
	}
	gc := gateway.Config{
		Egress:          policy,
		Pool:            pool,
		Box:             box,
		Logger:          log.With("service", "gateway"),
		Ready:           temporalReady(tc),
		Registry:        reg,
		UpstreamTimeout: timeout,
		Runs:            runsc,
		Documents:       docs,
		NATS:            nc,
		Admitter:        adm,
		Cache:           cache,
		Usage:           rec,
	}
	return gateway.New(gc)
}

// runInBackground runs f until the returned stop is called, and waits for it.
func runInBackground(ctx context.Context, f func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// promptWorker is a started BudPrompt worker, the listener that keeps its
// model deployments fresh, the poller that exports its task queue's
// backlog, and the HTTP handler that reports its health.
type promptWorker struct {
	w             worker.Worker
	h             http.Handler
	reg           *prometheus.Registry
	stopListening func()
	stopBacklog   func()
}

// Stop stops the worker, then the listener its model calls relied on.
func (pw *promptWorker) Stop() {
	pw.w.Stop()
	pw.stopBacklog()
	pw.stopListening()
}

// workerMetrics are the registry of a worker's metrics and the SDK metrics
// handler that fills it, which the worker's Temporal client is dialed with.
func workerMetrics() (*prometheus.Registry, client.MetricsHandler) {
	reg := metrics.NewRegistry()
	return reg, metrics.NewTemporal(reg)
}

// workerOptions are the options of a worker sized by sc; an autoscaled
// one reads this machine's CPU and memory use.
func workerOptions(log *slog.Logger, sc scaling.Config) (worker.Options, error) {
	var sys worker.SysInfoProvider
	if sc.Autoscale {
		si, err := scaling.NewSysInfo()
		if err != nil {
			return worker.Options{}, fmt.Errorf("BUD_WORKER_AUTOSCALE=on: %w", err)
		}
		sys = si
	}
	opts, err := sc.WorkerOptions(sys)
	if err == nil {
		log.Info("worker sized", "autoscale", sc.Autoscale, "min_slots", sc.MinSlots, "max_slots", sc.MaxSlots, "max_pollers", sc.MaxPollers)
	}
	return opts, err
}

// startWorker starts a BudPrompt worker with opts (workerOptions), whose
// metrics go to reg: tc must have been dialed with reg's SDK metrics
// handler (workerMetrics), which reports its slots and pollers.
func startWorker(ctx context.Context, log *slog.Logger, cfg *config, opts worker.Options, tc client.Client, pool *pgxpool.Pool, nc *nats.Conn, reg *prometheus.Registry, adm *admission.Admitter) (*promptWorker, error) {
	box, err := sealBox(cfg.EncryptionKey)
	if err != nil {
		return nil, err
	}
	policy, err := egress.Parse(cfg.EgressDeny)
	if err != nil {
		return nil, fmt.Errorf("BUD_EGRESS_DENY: %w", err)
	}
	// Runs carry search attributes; a cluster that lacks them would refuse
	// every start. Registering is idempotent.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := runs.RegisterSearchAttributes(rctx, tc, cfg.TemporalNamespace); err != nil {
		log.Warn("register search attributes", "err", err)
	}
	// The gateway's change notifications reach the worker's deployments
	// too: a changed deployment is called as it now is from the next call.
	deployments := deployment.NewCache(deployment.Config{Pool: pool, Box: box})
	stopListening := runInBackground(context.WithoutCancel(ctx), changes.NewListener(pool, log.With("service", "worker"), deployments).Run)
	host, _ := os.Hostname()
	w := workflows.NewWorker(tc, activities.New(activities.Config{
		Identity: fmt.Sprintf("%s@%d", host, os.Getpid()), Pool: pool, Box: box, NATS: nc, Deployments: deployments, Egress: policy, Admitter: adm,
		Tools: &activities.Connections{Pool: pool, Box: box, HTTPClient: &http.Client{Timeout: workflows.CallToolTimeout, Transport: policy.Transport()}},
	}), opts)
	if err := w.Start(); err != nil {
		stopListening()
		return nil, fmt.Errorf("worker: start: %w", err)
	}
	backlog := scaling.NewBacklog(reg, tc.WorkflowService(), cfg.TemporalNamespace, run.TaskQueue, log.With("service", "worker"))
	stopBacklog := runInBackground(context.WithoutCancel(ctx), func(ctx context.Context) error { return backlog.Run(ctx, scaling.BacklogEvery) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var failing []string
		if err := pool.Ping(ctx); err != nil {
			failing = append(failing, "postgres")
		}
		if err := temporalReady(tc)(ctx); err != nil {
			failing = append(failing, "temporal")
		}
		rw.Header().Set("Content-Type", "application/json")
		if len(failing) > 0 {
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(rw, `{"status":"unavailable","failing":%q}`+"\n", strings.Join(failing, ","))
			return
		}
		_, _ = rw.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return &promptWorker{w: w, h: mux, reg: reg, stopListening: stopListening, stopBacklog: stopBacklog}, nil
}

func runMigrate(ctx context.Context, args []string) error {
	var cfg config
	if err := cfg.parse("migrate", args, "database-url", "log-level", "log-format"); err != nil {
		return err
	}
	log, err := cfg.logger(os.Stderr)
	if err != nil {
		return err
	}
	pool, err := openDB(ctx, log, cfg.DatabaseURL, true)
	if err != nil {
		return err
	}
	pool.Close()
	log.Info("database is up to date")
	return nil
}

func runApp(ctx context.Context, args []string) error {
	var cfg config
	if err := cfg.parse("app", args, "database-url", "temporal-address", "temporal-namespace", "temporal-tls-cert", "temporal-tls-key", "temporal-tls-ca", "temporal-tls-server-name", "temporal-api-key", "app-addr", "metrics-addr", "admin-token", "admin-token-file", "encryption-key", "dapr-grpc-address", "dapr-store", "dapr-api-token", "run-wait", "egress-deny", "log-level", "log-format"); err != nil {
		return err
	}
	if err := cfg.resolveAdminToken(); err != nil {
		return err
	}
	return runOne(ctx, &cfg, "app")
}

func runGateway(ctx context.Context, args []string) error {
	var cfg config
	if err := cfg.parse("gateway", args, "database-url", "temporal-address", "temporal-namespace", "temporal-tls-cert", "temporal-tls-key", "temporal-tls-ca", "temporal-tls-server-name", "temporal-api-key", "gateway-addr", "metrics-addr", "encryption-key", "upstream-timeout", "redis-url", "redis-prefix", "cache-bytes", "dapr-grpc-address", "dapr-store", "dapr-api-token", "nats-url", "nats-creds", "nats-tls-ca", "nats-tls-cert", "nats-tls-key", "run-wait", "egress-deny", "log-level", "log-format"); err != nil {
		return err
	}
	return runOne(ctx, &cfg, "gateway")
}

func runWorker(ctx context.Context, args []string) error {
	var cfg config
	if err := cfg.parse("worker", args, "database-url", "temporal-address", "temporal-namespace", "temporal-tls-cert", "temporal-tls-key", "temporal-tls-ca", "temporal-tls-server-name", "temporal-api-key", "worker-addr", "metrics-addr", "encryption-key", "redis-url", "redis-prefix", "nats-url", "nats-creds", "nats-tls-ca", "nats-tls-cert", "nats-tls-key", "egress-deny", "worker-autoscale", "worker-min-slots", "worker-max-slots", "worker-max-pollers", "worker-target-cpu", "worker-target-memory", "log-level", "log-format"); err != nil {
		return err
	}
	return runOne(ctx, &cfg, "worker")
}

// runOne runs a single service against external Postgres and Temporal.
// Migrations are `bud migrate`'s job, so that many replicas never race.
func runOne(ctx context.Context, cfg *config, service string) error {
	log, err := cfg.logger(os.Stderr)
	if err != nil {
		return err
	}
	// A worker's sizing is checked before anything is dialed, and its
	// client reports the SDK's metrics to the worker's registry.
	var wopts worker.Options
	var reg *prometheus.Registry
	var mh client.MetricsHandler
	if service == "worker" {
		sc, err := cfg.workerScaling()
		if err != nil {
			return err
		}
		if wopts, err = workerOptions(log, sc); err != nil {
			return err
		}
		reg, mh = workerMetrics()
	}
	pool, err := openDB(ctx, log, cfg.DatabaseURL, false)
	if err != nil {
		return err
	}
	defer pool.Close()
	sec, err := cfg.temporalSecurity()
	if err != nil {
		return err
	}
	tc, err := dialTemporal(log, cfg.TemporalAddress, cfg.TemporalNamespace, sec, mh)
	if err != nil {
		return err
	}
	defer tc.Close()

	var l *listener
	switch service {
	case "app":
		docs, err := statestore.NewStore(daprAddress(cfg), cfg.DaprStore, statestore.WithAPIToken(cfg.DaprAPIToken))
		if err != nil {
			return err
		}
		defer docs.Close()
		reg = metrics.NewRegistry()
		// BudApp alone serves requests of no deployment: its recorder
		// counts nothing of its own, and the report reads what the
		// gateways wrote.
		h, err := newApp(log, cfg, pool, tc, docs, reg, nil)
		if err != nil {
			return err
		}
		if l, err = listen("app", cfg.AppAddr, h); err != nil {
			return err
		}
	case "gateway":
		docs, err := statestore.NewStore(daprAddress(cfg), cfg.DaprStore, statestore.WithAPIToken(cfg.DaprAPIToken))
		if err != nil {
			return err
		}
		defer docs.Close()
		nc, err := connectNATS(log, cfg, service)
		if err != nil {
			return err
		}
		if nc != nil {
			defer nc.Close()
		}
		rc, err := connectRedis(ctx, log, cfg, service)
		if err != nil {
			return err
		}
		if rc != nil {
			defer rc.Close()
		}
		adm := newAdmitter(log, cfg, rc)
		defer adm.Close()
		cache, err := newReplyCache(log, cfg, rc)
		if err != nil {
			return err
		}
		reg = metrics.NewRegistry()
		rec, err := budusage.New(budusage.Config{Pool: pool, Registry: reg, Logger: log.With("service", "gateway")})
		if err != nil {
			return err
		}
		// Deferred first, so it runs last: the requests the server drains
		// are written too.
		defer runInBackground(context.WithoutCancel(ctx), rec.Run)()
		g, err := newGateway(log, cfg, pool, tc, docs, nc, adm, cache, rec, reg)
		if err != nil {
			return err
		}
		if l, err = listenGateway(cfg.GatewayAddr, g); err != nil {
			return err
		}
		// Deferred, so it runs after the server has drained: the last
		// requests' key use is written too.
		defer runInBackground(context.WithoutCancel(ctx), g.Run)()
	case "worker":
		nc, err := connectNATS(log, cfg, service)
		if err != nil {
			return err
		}
		if nc != nil {
			defer nc.Close()
		}
		rc, err := connectRedis(ctx, log, cfg, service)
		if err != nil {
			return err
		}
		if rc != nil {
			defer rc.Close()
		}
		adm := newAdmitter(log, cfg, rc)
		defer adm.Close()
		pw, err := startWorker(ctx, log, cfg, wopts, tc, pool, nc, reg, adm)
		if err != nil {
			return err
		}
		defer pw.Stop()
		if l, err = listen("worker", cfg.WorkerAddr, pw.h); err != nil {
			return err
		}
	}
	log.Info("listening", "service", service, "url", l.URL(), "temporal", cfg.TemporalAddress)
	ls := []*listener{l}
	if addr := cfg.metricsAddr(service); addr != "" {
		ml, err := listen("metrics", addr, metrics.NewMux(reg))
		if err != nil {
			l.ln.Close()
			return err
		}
		log.Info("listening", "service", service, "metrics", ml.URL()+"/metrics")
		ls = append(ls, ml)
	}
	return serveAll(ctx, log, ls...)
}
