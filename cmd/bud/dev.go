package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/budhq/bud"
	"github.com/budhq/bud/daprd"
	"github.com/budhq/bud/db"
	"github.com/budhq/bud/metrics"
	"github.com/budhq/bud/runs"
	"github.com/budhq/bud/runstream"
	"github.com/budhq/bud/secrets"
	"github.com/budhq/bud/statestore"
	"github.com/budhq/bud/temporalserver"
	"github.com/budhq/bud/upstreamtest"
	budusage "github.com/budhq/bud/usage"
)

// runDev runs the whole stack in one process on embedded defaults.
func runDev(ctx context.Context, args []string) error {
	var cfg config
	if err := cfg.parse("dev", args); err != nil {
		return err
	}
	if cfg.NATSURL == "" && cfg.natsSecured() {
		return errors.New("BUD_NATS_CREDS and BUD_NATS_TLS_* are for an external NATS (BUD_NATS_URL); bud dev's embedded server makes a password of its own")
	}
	log, err := cfg.logger(os.Stderr)
	if err != nil {
		return err
	}
	sc, err := cfg.workerScaling()
	if err != nil {
		return err
	}
	wopts, err := workerOptions(log, sc)
	if err != nil {
		return err
	}
	started := time.Now()

	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := cfg.resolveAdminToken(); err != nil {
		return err
	}
	if cfg.AdminToken == "" {
		if cfg.AdminToken, err = loadOrCreate(filepath.Join(dataDir, "admin-token"), newAdminToken); err != nil {
			return err
		}
	}
	if cfg.EncryptionKey == "" {
		if cfg.EncryptionKey, err = loadOrCreate(filepath.Join(dataDir, "encryption-key"), secrets.NewKey); err != nil {
			return err
		}
	}

	if err := db.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	pool, err := openDB(ctx, log, cfg.DatabaseURL, true)
	if err != nil {
		return err
	}
	defer pool.Close()

	ip, port, uiPort, err := embeddedTemporalAddrs(&cfg)
	if err != nil {
		return err
	}
	ts, err := temporalserver.Start(ctx, temporalserver.Options{
		IP:               ip,
		FrontendPort:     port,
		UIPort:           uiPort,
		DatabaseFile:     filepath.Join(dataDir, "temporal.db"),
		Namespace:        cfg.TemporalNamespace,
		SearchAttributes: runs.SearchAttributes(),
		Logger:           log,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := ts.Stop(); err != nil {
			log.Warn("temporal server stop", "err", err)
		}
	}()

	// The embedded server is plaintext on loopback: the TEMPORAL_TLS_* and
	// TEMPORAL_API_KEY settings, which the Temporal CLI shares, are for an
	// external one.
	if cfg.TemporalTLSCert != "" || cfg.TemporalTLSKey != "" || cfg.TemporalTLSCA != "" || cfg.TemporalTLSServerName != "" || cfg.TemporalAPIKey != "" {
		log.Warn("TEMPORAL_TLS_* and TEMPORAL_API_KEY are for an external Temporal; bud dev's embedded server ignores them")
	}
	// One client for every service, so that the worker takes a run's
	// first workflow task as the gateway starts it (eager start): it
	// reports the SDK's metrics, the worker's among them, to the worker's
	// registry.
	workerReg, mh := workerMetrics()
	tc, err := dialTemporal(log, ts.HostPort(), ts.Namespace(), temporalSecurity{}, mh)
	if err != nil {
		return err
	}
	defer tc.Close()

	daprAddr, daprToken, daprLabel := cfg.DaprGRPCAddress, cfg.DaprAPIToken, "external"
	if daprAddr == "" {
		sidecar, err := daprd.Start(ctx, daprd.Config{
			DatabaseURL: cfg.DatabaseURL,
			Logger:      log.With("component", "daprd"),
		})
		if err != nil {
			return fmt.Errorf("dapr sidecar: %w", err)
		}
		defer func() {
			if err := sidecar.Stop(); err != nil {
				log.Warn("daprd stop", "err", err)
			}
		}()
		// The sidecar requires a token of its own, made per start.
		daprAddr, daprToken, daprLabel = sidecar.GRPCAddr(), sidecar.APIToken(), "daprd child process, state.postgresql v2, HTTP "+sidecar.HTTPAddr()
	}
	docs, err := statestore.NewStore(daprAddr, cfg.DaprStore, statestore.WithAPIToken(daprToken))
	if err != nil {
		return err
	}
	defer docs.Close()

	natsLabel := "external"
	if cfg.NATSURL == "" {
		// The URL holds the password made for this start: the banner
		// prints it redacted.
		ns, err := runstream.StartServer(cfg.NATSAddr)
		if err != nil {
			return fmt.Errorf("BUD_NATS_ADDR: %w", err)
		}
		defer ns.Shutdown()
		cfg.NATSURL, natsLabel = ns.URL(), "embedded"
	}
	nc, err := connectNATS(log, &cfg, "dev")
	if err != nil {
		return err
	}
	defer nc.Close()

	rc, err := connectRedis(ctx, log, &cfg, "dev")
	if err != nil {
		return err
	}
	if rc != nil {
		defer rc.Close()
	}

	// One Admitter: the gateway's requests and the worker's model calls
	// count against the same limits.
	adm := newAdmitter(log, &cfg, rc)
	defer adm.Close()

	cache, err := newReplyCache(log, &cfg, rc)
	if err != nil {
		return err
	}

	appReg, gwReg := metrics.NewRegistry(), metrics.NewRegistry()
	// One usage recorder, its metrics registered once: the gateway counts
	// into it, and BudApp's usage report writes it before reading, so the
	// report includes the last second's requests.
	rec, err := budusage.New(budusage.Config{Pool: pool, Registry: gwReg, Logger: log.With("service", "usage")})
	if err != nil {
		return err
	}
	defer runInBackground(context.WithoutCancel(ctx), rec.Run)()
	appHandler, err := newApp(log, &cfg, pool, tc, docs, appReg, rec)
	if err != nil {
		return err
	}
	gw, err := newGateway(log, &cfg, pool, tc, docs, nc, adm, cache, rec, gwReg)
	if err != nil {
		return err
	}
	defer runInBackground(context.WithoutCancel(ctx), gw.Run)()
	pw, err := startWorker(ctx, log, &cfg, wopts, tc, pool, nc, workerReg, adm)
	if err != nil {
		return err
	}
	defer pw.Stop()

	gwL, err := listenGateway(cfg.GatewayAddr, gw)
	if err != nil {
		return err
	}
	appL, err := listen("app", cfg.AppAddr, appHandler)
	if err != nil {
		gwL.ln.Close()
		return err
	}
	wkL, err := listen("worker", cfg.WorkerAddr, pw.h)
	if err != nil {
		gwL.ln.Close()
		appL.ln.Close()
		return err
	}
	ls := []*listener{gwL, appL, wkL}
	metricsURL := "disabled"
	if addr := cfg.metricsAddr("dev"); addr != "" {
		// One process, so one listener serves every service's registry.
		ml, err := listen("metrics", addr, metrics.NewMux(gwReg, appReg, pw.reg))
		if err != nil {
			gwL.ln.Close()
			appL.ln.Close()
			wkL.ln.Close()
			return err
		}
		ls = append(ls, ml)
		metricsURL = ml.URL() + "/metrics"
	}

	standIn := ""
	if cfg.StandInAddr != "" {
		up, err := upstreamtest.Listen(cfg.StandInAddr)
		if err != nil {
			for _, l := range ls {
				l.ln.Close()
			}
			return fmt.Errorf("stand-in: %w", err)
		}
		defer up.Close()
		up.SetRecording(false)
		up.SetDefault(upstreamtest.Echo())
		standIn = up.URL()
	}

	printBanner(os.Stdout, banner{
		StandIn:    standIn,
		Dapr:       daprAddr + "  (" + daprLabel + ")",
		NATS:       bud.RedactURLsKeepingUsers(cfg.NATSURL) + "  (" + natsLabel + ", streams run deltas)",
		Gateway:    gwL.URL(),
		App:        appL.URL(),
		Worker:     wkL.URL(),
		Metrics:    metricsURL,
		Temporal:   ts.HostPort(),
		Namespace:  ts.Namespace(),
		TemporalUI: ts.UIAddr(),
		Database:   redactURL(cfg.DatabaseURL),
		DataDir:    dataDir,
		AdminToken: cfg.AdminToken,
		Took:       time.Since(started),
	})
	err = serveAll(ctx, log, ls...)
	log.Info("shutting down")
	// The worker stops before the server, cancelling its polls and any
	// workflow task in flight: the server's errors about those are
	// expected from here on.
	ts.Stopping()
	return err
}

type banner struct {
	Gateway, App, Worker, Metrics, Temporal, Namespace, TemporalUI, Database, DataDir, AdminToken, StandIn, Dapr, NATS string
	Took                                                                                                               time.Duration
}

func printBanner(w io.Writer, b banner) {
	ui := "disabled"
	if b.TemporalUI != "" {
		ui = "http://" + b.TemporalUI
	}
	standIn := ""
	if b.StandIn != "" {
		standIn = fmt.Sprintf("  Stand-in     %s    OpenAI-compatible model that echoes (base_url for a deployment)\n", b.StandIn)
	}
	fmt.Fprintf(w, `
Bud is running (started in %s).

  BudGateway   %s    OpenAI-compatible API (/v1)
  BudApp       %s    web console (/) and management API (/api)
  BudPrompt    %s    worker health
  Metrics      %s    Prometheus, every service (keep it private)
  Temporal     %s          namespace %q
  Temporal UI  %s
  Dapr         %s
  NATS         %s
  Postgres     %s
  Data dir     %s
%s
  Admin token  %s
               (send as "Authorization: Bearer <token>" to BudApp's /api)

Press Ctrl-C to stop.
`, b.Took.Round(time.Millisecond), b.Gateway, b.App, b.Worker, b.Metrics, b.Temporal, b.Namespace, ui, b.Dapr, b.NATS, b.Database, b.DataDir, standIn, b.AdminToken)
}

// loadOrCreate returns the trimmed content of path, creating it with gen()
// (mode 0600) when it does not exist, so a second `bud dev` reuses it.
func loadOrCreate(path string, gen func() string) (string, error) {
	v, found, err := readKeyFile(path)
	switch {
	case err != nil:
		return "", err
	case found && v == "":
		return "", fmt.Errorf("%s is empty; delete it to generate a new one", path)
	case found:
		return v, nil
	}
	v = gen()
	if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return v, nil
}

func newAdminToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "budadmin-" + base64.RawURLEncoding.EncodeToString(b[:])
}

// embeddedTemporalAddrs is where the embedded Temporal server listens:
// the IP and port of TEMPORAL_ADDRESS, and the port of TEMPORAL_UI_ADDRESS
// (0 without a UI), which must share that IP. The server has no
// authentication, so an address that is not loopback is refused.
func embeddedTemporalAddrs(cfg *config) (ip string, port, uiPort int, err error) {
	ip, port, err = splitHostPort(cfg.TemporalAddress, "TEMPORAL_ADDRESS")
	if err != nil {
		return "", 0, 0, err
	}
	if a := net.ParseIP(ip); a == nil || !a.IsLoopback() {
		return "", 0, 0, fmt.Errorf("TEMPORAL_ADDRESS: %s is not a loopback address; `bud dev`'s embedded Temporal has no authentication, so it listens on 127.0.0.1 (or ::1) only", cfg.TemporalAddress)
	}
	if cfg.TemporalUIAddr == "" {
		return ip, port, 0, nil
	}
	uiIP, uiPort, err := splitHostPort(cfg.TemporalUIAddr, "TEMPORAL_UI_ADDRESS")
	if err != nil {
		return "", 0, 0, err
	}
	if a := net.ParseIP(uiIP); a == nil || !a.IsLoopback() {
		return "", 0, 0, fmt.Errorf("TEMPORAL_UI_ADDRESS: %s is not a loopback address; `bud dev`'s embedded Temporal UI has no authentication, so it listens on 127.0.0.1 (or ::1) only", cfg.TemporalUIAddr)
	}
	if uiIP != ip {
		return "", 0, 0, fmt.Errorf("TEMPORAL_UI_ADDRESS: the embedded UI listens on the frontend's IP %s, not %s", ip, uiIP)
	}
	return ip, port, uiPort, nil
}

func splitHostPort(addr, name string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %q is not host:port: %w", name, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s: %q has no valid port", name, addr)
	}
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	return host, port, nil
}

// redactURL hides a password in a connection string before it is printed.
func redactURL(u string) string {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return "(unparsable DATABASE_URL)"
	}
	user := cfg.User
	if cfg.Password != "" {
		user += ":***"
	}
	return fmt.Sprintf("postgres://%s@%s/%s", user, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), cfg.Database)
}
