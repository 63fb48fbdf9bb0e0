package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/budhq/bud/app"
	"github.com/budhq/bud/scaling"
)

// setting is one configuration value: an environment variable, the flag
// that overrides it, and its default. The README's configuration table is
// this list.
type setting struct {
	env, flag, def, help string
	value                *string
}

// config is every setting of every subcommand; each subcommand registers
// the flags it uses.
type config struct {
	DatabaseURL       string
	TemporalAddress   string
	TemporalNamespace string
	TemporalUIAddr    string
	GatewayAddr       string
	AppAddr           string
	WorkerAddr        string
	AdminToken        string
	AdminTokenFile    string
	EncryptionKey     string
	DataDir           string
	LogLevel          string
	LogFormat         string
	UpstreamTimeout   string
	StandInAddr       string
	DaprGRPCAddress   string
	DaprStore         string
	NATSURL           string
	NATSAddr          string
	NATSCreds         string
	NATSTLSCA         string
	NATSTLSCert       string
	NATSTLSKey        string
	RunWait           string
	EgressDeny        string
	MetricsAddr       string
	RedisURL          string
	RedisPrefix       string
	CacheBytes        string

	WorkerAutoscale    string
	WorkerMinSlots     string
	WorkerMaxSlots     string
	WorkerMaxPollers   string
	WorkerTargetCPU    string
	WorkerTargetMemory string

	TemporalTLSCert       string
	TemporalTLSKey        string
	TemporalTLSCA         string
	TemporalTLSServerName string
	TemporalAPIKey        string

	DaprAPIToken string
}

func (c *config) settings() []setting {
	return []setting{
		{"DATABASE_URL", "database-url", "postgres://postgres@127.0.0.1:5432/bud?sslmode=disable", "PostgreSQL connection string", &c.DatabaseURL},
		{"TEMPORAL_ADDRESS", "temporal-address", "127.0.0.1:7233", "Temporal frontend (host:port); `bud dev` serves its embedded server here", &c.TemporalAddress},
		{"TEMPORAL_NAMESPACE", "temporal-namespace", "default", "Temporal namespace", &c.TemporalNamespace},
		{"TEMPORAL_UI_ADDRESS", "temporal-ui-address", "127.0.0.1:8233", "Temporal Web UI address (`bud dev` only; empty disables the UI)", &c.TemporalUIAddr},
		{"BUD_GATEWAY_ADDR", "gateway-addr", "127.0.0.1:8080", "BudGateway listen address", &c.GatewayAddr},
		{"BUD_APP_ADDR", "app-addr", "127.0.0.1:8081", "BudApp listen address", &c.AppAddr},
		{"BUD_WORKER_ADDR", "worker-addr", "127.0.0.1:8082", "BudPrompt worker's health address", &c.WorkerAddr},
		{"BUD_METRICS_ADDR", "metrics-addr", metricsAddrAuto, "Prometheus /metrics listen address, apart from the public listeners; auto is 127.0.0.1:9090 for `bud dev` (every service's metrics), 127.0.0.1:9091 for `bud gateway`, :9092 for `bud app`, :9093 for `bud worker`; empty or off disables", &c.MetricsAddr},
		{"BUD_ADMIN_TOKEN", "admin-token", "", "bearer token for BudApp's /api (`bud dev` generates one in the data directory)", &c.AdminToken},
		{"BUD_ADMIN_TOKEN_FILE", "admin-token-file", "", "file holding the admin token, surrounding whitespace trimmed; instead of BUD_ADMIN_TOKEN, so the token stays out of the environment", &c.AdminTokenFile},
		{"BUD_ENCRYPTION_KEY", "encryption-key", "", "base64 32-byte key sealing provider credentials (`bud dev` generates one in the data directory)", &c.EncryptionKey},
		{"BUD_DATA_DIR", "data-dir", ".bud", "`bud dev` data directory: Temporal's SQLite file, generated token and key", &c.DataDir},
		{"BUD_UPSTREAM_TIMEOUT", "upstream-timeout", "10m", "how long the gateway waits for an upstream's response headers (504 after)", &c.UpstreamTimeout},
		{"BUD_STAND_IN_ADDR", "stand-in", "", "`bud dev` only: also serve an OpenAI-compatible stand-in model at this address (e.g. 127.0.0.1:8090), to try Bud without a model", &c.StandInAddr},
		{"BUD_DAPR_GRPC_ADDRESS", "dapr-grpc-address", "", "daprd's gRPC API (host:port) for prompt documents; `bud app` falls back to 127.0.0.1:$DAPR_GRPC_PORT, then 127.0.0.1:50001; `bud dev` starts its own daprd when unset", &c.DaprGRPCAddress},
		{"BUD_DAPR_STORE", "dapr-store", "bud-prompts", "name of the Dapr state store component that keeps prompt documents", &c.DaprStore},
		{"BUD_NATS_URL", "nats-url", "", "NATS server(s) that carry streaming runs' deltas from workers to gateways (nats://host:port, comma-separated; nats://user:password@host:port or nats://token@host:port authenticate); without it `bud gateway` answers stream: true with 503, and `bud dev` starts an embedded server", &c.NATSURL},
		{"BUD_NATS_ADDR", "nats-addr", "127.0.0.1:4223", "`bud dev` only: listen address of the embedded NATS server (loopback; used when BUD_NATS_URL is empty), which requires user bud and a password made at each start", &c.NATSAddr},
		{"BUD_NATS_CREDS", "nats-creds", "", "credentials file (user JWT and nkey seed, as `nsc` writes it) for BUD_NATS_URL's servers", &c.NATSCreds},
		{"BUD_NATS_TLS_CA", "nats-tls-ca", "", "PEM CA certificate(s) that verify BUD_NATS_URL's servers, instead of the system roots; any BUD_NATS_TLS_* setting turns TLS on", &c.NATSTLSCA},
		{"BUD_NATS_TLS_CERT", "nats-tls-cert", "", "PEM client certificate for mutual TLS to BUD_NATS_URL's servers (with BUD_NATS_TLS_KEY)", &c.NATSTLSCert},
		{"BUD_NATS_TLS_KEY", "nats-tls-key", "", "PEM private key of BUD_NATS_TLS_CERT", &c.NATSTLSKey},
		{"BUD_RUN_WAIT", "run-wait", "start", "how the gateway and the playground start a prompt run and wait for its first turn: start (eager start; the run announces its first turn over NATS, and an update asks for it when it has not within 2 s) or update (update-with-start, whose update answers); see Speed in the README", &c.RunWait},
		{"BUD_REDIS_URL", "redis-url", "", "one Redis server (redis://[user:password@]host:port[/db], rediss:// for TLS; not a cluster) that every gateway and worker shares for rate limits, concurrency slots and the response cache; without it each process counts and caches alone, and `bud dev` in its one process", &c.RedisURL},
		{"BUD_REDIS_PREFIX", "redis-prefix", "bud:", "prefix of every Redis key, so that several installations can share a Redis", &c.RedisPrefix},
		{"BUD_CACHE_BYTES", "cache-bytes", "64MiB", "bytes of the gateway's in-process response cache (a number with an optional KiB, MiB or GiB), for deployments whose settings enable caching; with BUD_REDIS_URL the cache lives in Redis, shared by every gateway, and this bounds the copies of the entries a process has used, kept in its memory in front of Redis for the rest of their time to live", &c.CacheBytes},
		{"BUD_EGRESS_DENY", "egress-deny", "", "comma-separated CIDRs, `loopback` and `private`: addresses of configured URLs (model deployments, connections, their redirects) refused at connect time, besides link-local and cloud metadata addresses, which always are", &c.EgressDeny},
		{"BUD_WORKER_AUTOSCALE", "worker-autoscale", "off", "on: the BudPrompt worker's pollers scale with the server's hints (1 to BUD_WORKER_MAX_POLLERS, the Temporal SDK's poller autoscaling) and its slots with its CPU and memory use (BUD_WORKER_MIN_SLOTS to BUD_WORKER_MAX_SLOTS, the SDK's resource-based slot suppliers); off: fixed slots and pollers", &c.WorkerAutoscale},
		{"BUD_WORKER_MAX_SLOTS", "worker-max-slots", strconv.Itoa(scaling.DefaultMaxSlots), "tasks of each kind (workflow tasks, activities, local activities) the worker runs at once: all of them with autoscale off, the ceiling with it on", &c.WorkerMaxSlots},
		{"BUD_WORKER_MIN_SLOTS", "worker-min-slots", "", fmt.Sprintf("autoscale on only: slots of each kind handed out without looking at CPU and memory (default %d)", scaling.DefaultMinSlots), &c.WorkerMinSlots},
		{"BUD_WORKER_MAX_POLLERS", "worker-max-pollers", "", fmt.Sprintf("polls the worker keeps open for each task kind: all of them with autoscale off (default %d), the ceiling with it on (default %d)", scaling.DefaultFixedPollers, scaling.DefaultMaxPollers), &c.WorkerMaxPollers},
		{"BUD_WORKER_TARGET_CPU", "worker-target-cpu", "", fmt.Sprintf("autoscale on only: share of CPU (of the container's cgroup limit, else of the machine) past which no more slots are handed out (default %g)", scaling.DefaultTargetCPU), &c.WorkerTargetCPU},
		{"BUD_WORKER_TARGET_MEMORY", "worker-target-memory", "", fmt.Sprintf("autoscale on only: share of memory (of the container's cgroup limit, else of the machine) past which no more slots are handed out (default %g)", scaling.DefaultTargetMemory), &c.WorkerTargetMemory},
		{"TEMPORAL_TLS_CERT", "temporal-tls-cert", "", "PEM client certificate for mTLS to an external Temporal (with TEMPORAL_TLS_KEY); any TEMPORAL_TLS_* setting turns TLS on (not `bud dev`, whose embedded server is plaintext on loopback)", &c.TemporalTLSCert},
		{"TEMPORAL_TLS_KEY", "temporal-tls-key", "", "PEM private key of TEMPORAL_TLS_CERT", &c.TemporalTLSKey},
		{"TEMPORAL_TLS_CA", "temporal-tls-ca", "", "PEM CA certificate(s) that verify the Temporal server, instead of the system roots", &c.TemporalTLSCA},
		{"TEMPORAL_TLS_SERVER_NAME", "temporal-tls-server-name", "", "name to verify the Temporal server's certificate against, when not the host of TEMPORAL_ADDRESS", &c.TemporalTLSServerName},
		{"TEMPORAL_API_KEY", "temporal-api-key", "", "API key sent to an external Temporal (e.g. Temporal Cloud); turns TLS on", &c.TemporalAPIKey},
		{"DAPR_API_TOKEN", "dapr-api-token", "", "API token of an external daprd (BUD_DAPR_GRPC_ADDRESS), sent with every state store call; the daprd `bud dev` starts gets a random one per start", &c.DaprAPIToken},
		{"BUD_LOG_LEVEL", "log-level", "info", "debug, info, warn or error", &c.LogLevel},
		{"BUD_LOG_FORMAT", "log-format", "text", "text or json", &c.LogFormat},
	}
}

// parse fills c from the environment, then from the flags named in use
// (all when use is empty); flags win.
func (c *config) parse(name string, args []string, use ...string) error {
	fs := c.flagSet(name, os.Stderr, fmt.Sprintf("usage: bud %s [flags]\n\nflags:\n", name), use...)
	// Parse shows the usage on -h itself.
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bud %s: unexpected argument %q", name, fs.Arg(0))
	}
	return nil
}

// flagSet fills c from the environment and returns the flags of `bud
// name` over its settings (all when use is empty, else those named), whose
// usage is header then the flags, written to out.
func (c *config) flagSet(name string, out io.Writer, header string, use ...string) *flag.FlagSet {
	fs := flag.NewFlagSet("bud "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	want := map[string]bool{}
	for _, u := range use {
		want[u] = true
	}
	for _, s := range c.settings() {
		*s.value = s.def
		if v, ok := os.LookupEnv(s.env); ok {
			*s.value = v
		}
		if len(want) == 0 || want[s.flag] {
			// A back-quoted word in a flag's usage names its value; these
			// quote commands.
			help := strings.ReplaceAll(s.help, "`", "'")
			fs.StringVar(s.value, s.flag, *s.value, help+" (env "+s.env+")")
		}
	}
	fs.Usage = func() {
		fmt.Fprint(out, header)
		fs.SetOutput(out)
		fs.PrintDefaults()
	}
	return fs
}

// metricsAddrAuto is BUD_METRICS_ADDR's default: a loopback port per
// command, so that a gateway, an app and a worker on one host do not
// collide (see metricsAddr).
const metricsAddrAuto = "auto"

// metricsAddr is where command (dev, gateway, app or worker) serves its
// metrics, "" when they are off. The metrics name every project and
// deployment, so the default is loopback.
func (c *config) metricsAddr(command string) string {
	switch c.MetricsAddr {
	case "", "off":
		return ""
	case metricsAddrAuto:
		return map[string]string{"dev": "127.0.0.1:9090", "gateway": "127.0.0.1:9091", "app": "127.0.0.1:9092", "worker": "127.0.0.1:9093"}[command]
	}
	return c.MetricsAddr
}

// resolveAdminToken reads the admin token from BUD_ADMIN_TOKEN_FILE when it
// is set, then refuses a token shorter than app.MinAdminTokenLen. An unset
// token is left empty for the caller to require or generate.
func (c *config) resolveAdminToken() error {
	if c.AdminTokenFile != "" {
		if c.AdminToken != "" {
			return errors.New("set BUD_ADMIN_TOKEN or BUD_ADMIN_TOKEN_FILE, not both")
		}
		b, err := os.ReadFile(c.AdminTokenFile)
		if err != nil {
			return fmt.Errorf("BUD_ADMIN_TOKEN_FILE: %w", err)
		}
		c.AdminToken = strings.TrimSpace(string(b))
		if c.AdminToken == "" {
			return fmt.Errorf("BUD_ADMIN_TOKEN_FILE: %s is empty", c.AdminTokenFile)
		}
	}
	if c.AdminToken != "" && len(c.AdminToken) < app.MinAdminTokenLen {
		return fmt.Errorf("the admin token (BUD_ADMIN_TOKEN or BUD_ADMIN_TOKEN_FILE) must be at least %d characters, it has %d; `openssl rand -base64 32` makes one", app.MinAdminTokenLen, len(c.AdminToken))
	}
	return nil
}

// logger is every service's logger, writing to w as BUD_LOG_LEVEL and
// BUD_LOG_FORMAT say, with the URLs in its lines redacted
// (redactingHandler).
func (c *config) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("BUD_LOG_LEVEL: %q is not debug, info, warn or error", c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.LogFormat) {
	case "text":
		return slog.New(newRedactingHandler(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(newRedactingHandler(slog.NewJSONHandler(w, opts))), nil
	default:
		return nil, fmt.Errorf("BUD_LOG_FORMAT: %q is not text or json", c.LogFormat)
	}
}

// workerScaling is how the BudPrompt worker is sized, from the
// BUD_WORKER_* settings; an unparsable value, one that contradicts
// another, or one that autoscale off would not read is an error naming
// the setting, before anything starts.
func (c *config) workerScaling() (scaling.Config, error) {
	var sc scaling.Config
	var errs []error
	intSetting := func(env, v string, def int) int {
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a whole number", env, v))
		}
		return n
	}
	shareSetting := func(env, v string, def float64) float64 {
		if v == "" {
			return def
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(f > 0 && f <= 1) {
			errs = append(errs, fmt.Errorf("%s: %q is not a share above 0 and at most 1, such as 0.8", env, v))
		}
		return f
	}
	switch strings.ToLower(strings.TrimSpace(c.WorkerAutoscale)) {
	case "on":
		sc.Autoscale = true
	case "off", "":
	default:
		return sc, fmt.Errorf("BUD_WORKER_AUTOSCALE: %q is neither on nor off", c.WorkerAutoscale)
	}
	sc.MaxSlots = intSetting("BUD_WORKER_MAX_SLOTS", c.WorkerMaxSlots, scaling.DefaultMaxSlots)
	if sc.MaxSlots < scaling.MinWorkflowSlots {
		errs = append(errs, fmt.Errorf("BUD_WORKER_MAX_SLOTS: %d is below %d, the fewest workflow task slots a worker runs with", sc.MaxSlots, scaling.MinWorkflowSlots))
	}
	if !sc.Autoscale {
		sc.MaxPollers = intSetting("BUD_WORKER_MAX_POLLERS", c.WorkerMaxPollers, scaling.DefaultFixedPollers)
		for _, s := range []struct{ env, v string }{
			{"BUD_WORKER_MIN_SLOTS", c.WorkerMinSlots}, {"BUD_WORKER_TARGET_CPU", c.WorkerTargetCPU}, {"BUD_WORKER_TARGET_MEMORY", c.WorkerTargetMemory},
		} {
			if s.v != "" {
				errs = append(errs, fmt.Errorf("%s is set, but it sizes an autoscaled worker and BUD_WORKER_AUTOSCALE is off: set BUD_WORKER_AUTOSCALE=on, or BUD_WORKER_MAX_SLOTS for fixed slots", s.env))
			}
		}
	} else {
		sc.MaxPollers = intSetting("BUD_WORKER_MAX_POLLERS", c.WorkerMaxPollers, scaling.DefaultMaxPollers)
		sc.MinSlots = intSetting("BUD_WORKER_MIN_SLOTS", c.WorkerMinSlots, scaling.DefaultMinSlots)
		if sc.MinSlots < 1 || sc.MinSlots > sc.MaxSlots {
			errs = append(errs, fmt.Errorf("BUD_WORKER_MIN_SLOTS: %d is not between 1 and BUD_WORKER_MAX_SLOTS (%d)", sc.MinSlots, sc.MaxSlots))
		}
		sc.TargetCPU = shareSetting("BUD_WORKER_TARGET_CPU", c.WorkerTargetCPU, scaling.DefaultTargetCPU)
		sc.TargetMemory = shareSetting("BUD_WORKER_TARGET_MEMORY", c.WorkerTargetMemory, scaling.DefaultTargetMemory)
	}
	if sc.MaxPollers < scaling.MinPollers {
		errs = append(errs, fmt.Errorf("BUD_WORKER_MAX_POLLERS: %d is below %d, the fewest pollers a worker runs with", sc.MaxPollers, scaling.MinPollers))
	}
	if err := errors.Join(errs...); err != nil {
		return sc, err
	}
	// What the settings cannot say wrong, Check would still catch.
	return sc, sc.Check()
}
