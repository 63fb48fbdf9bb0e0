// Package temporalserver embeds a real Temporal server in the process, with
// SQLite persistence and, optionally, the Temporal Web UI. `bud dev` and the
// tests that need a server use it; nothing else links it, because linking the
// server costs seconds per binary.
package temporalserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/common/resolver"
	temporalschema "go.temporal.io/server/schema"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
)

const clusterName = "active"

// Options configure an embedded server.
type Options struct {
	// IP the server's services and UI bind to (default 127.0.0.1). It must
	// be a loopback address: the server has no authentication, so it must
	// not be reachable from another host; Start refuses any other.
	IP string
	// FrontendPort is the gRPC port clients dial (0 picks a free one).
	FrontendPort int
	// UIPort serves the Temporal Web UI when > 0; 0 means no UI.
	UIPort int
	// DatabaseFile is the SQLite file; empty keeps everything in memory.
	DatabaseFile string
	// Namespace is registered at start (default "default").
	Namespace string
	// SearchAttributes are custom search attributes of the namespace.
	SearchAttributes map[string]enumspb.IndexedValueType
	// Logger receives the server's warnings and errors; nil discards them.
	Logger *slog.Logger
	// FirstComeFirstServed turns task queue fairness off: tasks are then
	// handed to workers in the order they were queued, whatever their
	// fairness keys, as a server without matching.enableFairness does.
	// Tests measure what fairness changes with it.
	FirstComeFirstServed bool
}

// Server is a running embedded Temporal server.
type Server struct {
	server    temporal.Server
	ui        *uiserver.Server
	uiDone    chan struct{}
	hostPort  string
	uiAddr    string
	namespace string
	// stopping is set once Stop begins: the server's errors about the
	// operations that Stop cancels are expected then (see slogLogger).
	stopping *atomic.Bool
}

// historyCacheSize bounds the workflows the history service keeps in
// memory. A thousand covers the runs one node has in flight; a workflow
// evicted from the cache is read back from the database when it next moves.
const historyCacheSize = 1024

// tuning are the dynamic-config values that make a single-node server fast:
// with the defaults a two-activity workflow takes ~150 ms, with these ~20 ms,
// and without the long-poll setting some start-then-wait calls stall for 20 s.
//
// matching.enableFairness makes the matching service hand out a task
// queue's waiting tasks in turn between their fairness keys, in proportion
// to their weights (runs.Priority), instead of first come first served: a
// flooded deployment's backlog then delays its own runs only. fifo turns
// it off.
func tuning(fifo bool) dynamicconfig.StaticClient {
	return dynamicconfig.StaticClient{
		dynamicconfig.MatchingEnableFairness.Key():                     !fifo,
		dynamicconfig.MakeKey("history.transferProcessorMaxPollRPS"):   10000,
		dynamicconfig.MakeKey("history.visibilityProcessorMaxPollRPS"): 10000,
		dynamicconfig.MakeKey("matching.numTaskqueueReadPartitions"):   1,
		dynamicconfig.MakeKey("matching.numTaskqueueWritePartitions"):  1,
		dynamicconfig.MakeKey("history.longPollExpirationInterval"):    time.Second,
		dynamicconfig.MakeKey("frontend.namespaceRPS.visibility"):      100,
		// A deleted run's history goes once the transfer queue has acked the
		// run's close; at the default 30 s ack interval a deletion waits that
		// long.
		dynamicconfig.TransferProcessorUpdateAckInterval.Key(): time.Second,
		// Workflows the history service keeps in memory: the default,
		// 128,000, lets a long-lived `bud dev` grow tens of KB per run.
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): historyCacheSize,
	}
}

// Start builds and starts a server and waits until its frontend answers.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.IP == "" || o.IP == "localhost" {
		o.IP = "127.0.0.1"
	}
	if ip := net.ParseIP(o.IP); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("temporalserver: IP %q is not a loopback address: the embedded server has no authentication, so it listens on loopback only (127.0.0.1 or ::1)", o.IP)
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.FrontendPort == 0 {
		p, err := FreePort(o.IP)
		if err != nil {
			return nil, err
		}
		o.FrontendPort = p
	}
	// Fail early and clearly on a taken port: the server and the UI would
	// otherwise fail deep inside, the UI by exiting the process.
	if err := checkPort(o.IP, o.FrontendPort, "Temporal frontend"); err != nil {
		return nil, err
	}
	if o.UIPort > 0 {
		if err := checkPort(o.IP, o.UIPort, "Temporal UI"); err != nil {
			return nil, err
		}
	}

	// The internal services' ports are picked free just before use; another
	// process can take one in between, so a clash is retried on new ports.
	var srv temporal.Server
	var err error
	stopping := new(atomic.Bool)
	for attempt := 1; ; attempt++ {
		srv, err = newServer(o, stopping)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	s := &Server{
		server:    srv,
		hostPort:  net.JoinHostPort(o.IP, strconv.Itoa(o.FrontendPort)),
		namespace: o.Namespace,
		stopping:  stopping,
	}
	if err := s.waitReady(ctx); err != nil {
		_ = srv.Stop()
		return nil, err
	}
	if o.UIPort > 0 {
		s.uiAddr = net.JoinHostPort(o.IP, strconv.Itoa(o.UIPort))
		s.ui = uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
			Host:                o.IP,
			Port:                o.UIPort,
			TemporalGRPCAddress: s.hostPort,
			EnableUI:            true,
			DefaultNamespace:    o.Namespace,
			CORS:                uiconfig.CORS{CookieInsecure: true},
			HideLogs:            true,
			DisableNewsFetch:    true,
		}))
		s.uiDone = make(chan struct{})
		go func() {
			defer close(s.uiDone)
			_ = s.ui.Start()
		}()
	}
	return s, nil
}

// newServer builds and starts a server on fresh internal ports.
func newServer(o Options, stopping *atomic.Bool) (temporal.Server, error) {
	conf, err := buildConfig(o)
	if err != nil {
		return nil, err
	}
	logger := log.Logger(log.NewNoopLogger())
	if o.Logger != nil {
		logger = slogLogger{o.Logger, stopping}
	}
	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("temporalserver: authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("temporalserver: claim mapper: %w", err)
	}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for name, svc := range conf.Services {
		hosts[primitives.ServiceName(name)] = static.SingleLocalHost(net.JoinHostPort(o.IP, strconv.Itoa(svc.RPC.GRPCPort)))
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(tuning(o.FirstComeFirstServed)),
	)
	if err != nil {
		return nil, fmt.Errorf("temporalserver: new server: %w", err)
	}
	if err := srv.Start(); err != nil {
		_ = srv.Stop()
		return nil, fmt.Errorf("temporalserver: start: %w", err)
	}
	return srv, nil
}

// waitReady polls the frontend until the namespace is served.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := client.NewLazyClient(client.Options{HostPort: s.hostPort, Namespace: s.namespace, Logger: quietSDKLogger{}})
	if err != nil {
		return fmt.Errorf("temporalserver: client: %w", err)
	}
	defer c.Close()
	var last error
	for {
		_, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: s.namespace})
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporalserver: frontend not ready: %w", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// HostPort is the frontend address clients dial.
func (s *Server) HostPort() string { return s.hostPort }

// UIAddr is the Web UI address, or "" without a UI.
func (s *Server) UIAddr() string { return s.uiAddr }

// Namespace is the namespace registered at start.
func (s *Server) Namespace() string { return s.namespace }

// Stopping marks the start of a shutdown: from then on the server's errors
// about operations that were cancelled (a worker's polls and workflow
// tasks as it stops, the server's own as it does) are logged at debug
// level. Stop calls it; a caller whose workers stop first calls it before.
func (s *Server) Stopping() { s.stopping.Store(true) }

// Stop stops the UI and the server.
func (s *Server) Stop() error {
	s.Stopping()
	if s.ui != nil {
		s.ui.Stop()
		<-s.uiDone
	}
	return s.server.Stop()
}

func buildConfig(o Options) (*config.Config, error) {
	// Executions and visibility live in two databases: SQLite has one
	// writer per database, and the plugin one connection per database, so
	// in one database every workflow's progress waited behind the run
	// lists' writes (three per run, each updating many indexes).
	visFile := ""
	if o.DatabaseFile != "" {
		visFile = strings.TrimSuffix(o.DatabaseFile, filepath.Ext(o.DatabaseFile)) + "-visibility" + filepath.Ext(o.DatabaseFile)
	}
	sqlConf, err := sqliteStore(o.DatabaseFile)
	if err != nil {
		return nil, err
	}
	visConf, err := sqliteStore(visFile)
	if err != nil {
		return nil, err
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, o.Namespace, false, o.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("temporalserver: namespace: %w", err)
	}
	if err := sqliteschema.CreateNamespaces(sqlConf, ns); err != nil {
		return nil, fmt.Errorf("temporalserver: create namespace: %w", err)
	}
	if err := trimVisibilityIndexes(visConf); err != nil {
		return nil, err
	}

	hostPort := net.JoinHostPort(o.IP, strconv.Itoa(o.FrontendPort))
	var conf config.Config
	conf.Global.Membership = config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: o.IP}
	conf.Persistence = config.Persistence{
		DefaultStore:     "sqlite",
		VisibilityStore:  "sqlite-visibility",
		NumHistoryShards: 1,
		DataStores: map[string]config.DataStore{
			"sqlite":            {SQL: sqlConf},
			"sqlite-visibility": {SQL: visConf},
		},
	}

	conf.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {Enabled: true, InitialFailoverVersion: 1, RPCAddress: hostPort},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{}
	for _, name := range []string{"frontend", "history", "matching", "worker"} {
		port := o.FrontendPort
		if name != "frontend" {
			p, err := FreePort(o.IP)
			if err != nil {
				return nil, err
			}
			port = p
		}
		mport, err := FreePort(o.IP)
		if err != nil {
			return nil, err
		}
		conf.Services[name] = config.Service{RPC: config.RPC{GRPCPort: port, MembershipPort: mport, BindOnIP: o.IP}}
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = hostPort
	return &conf, nil
}

// sqliteStore is the configuration of one SQLite database, file or (for
// "") in memory, with its schema set up.
func sqliteStore(file string) (*config.SQL, error) {
	sqlConf := &config.SQL{PluginName: sqliteplugin.PluginName, ConnectAttributes: map[string]string{}}
	if file == "" {
		sqlConf.ConnectAttributes["mode"] = "memory"
		sqlConf.ConnectAttributes["cache"] = "shared"
		// The name keys a process-wide shared-cache database, so it must be
		// unique per server; the plugin creates the schema on first open.
		var b [8]byte
		_, _ = rand.Read(b[:])
		sqlConf.DatabaseName = "bud-" + hex.EncodeToString(b[:])
		return sqlConf, nil
	}
	sqlConf.ConnectAttributes["mode"] = "rwc"
	// WAL with synchronous=NORMAL: durable across a process crash, and
	// several times faster than the rollback journal.
	sqlConf.ConnectAttributes["journal_mode"] = "wal"
	sqlConf.ConnectAttributes["synchronous"] = "1"
	sqlConf.DatabaseName = file
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return nil, fmt.Errorf("temporalserver: data directory: %w", err)
		}
		if err := sqliteschema.SetupSchema(sqlConf); err != nil {
			return nil, fmt.Errorf("temporalserver: set up schema of %s: %w", file, err)
		}
	}
	return sqlConf, nil
}

// keptVisibilityIndexes are the indexes of the SQLite visibility table that
// serve the Temporal UI's run lists: the default order, the common filters
// and every custom search attribute column Bud's attributes may take.
var keptVisibilityIndexes = map[string]bool{
	"default_idx": true, "by_execution_time": true, "by_workflow_id": true,
	"by_workflow_type": true, "by_status": true,
	"by_keyword_01": true, "by_keyword_02": true, "by_keyword_03": true, "by_keyword_04": true, "by_keyword_05": true,
	"by_keyword_06": true, "by_keyword_07": true, "by_keyword_08": true, "by_keyword_09": true, "by_keyword_10": true,
}

// createIndex finds the indexes a schema creates.
var createIndex = regexp.MustCompile(`(?m)^CREATE INDEX (\w+)`)

// trimVisibilityIndexes drops the SQLite visibility table's other indexes,
// as Temporal's own schema names them. The schema indexes every search
// attribute column, 58 in all, and each run writes its visibility row three
// times (start, first workflow task, close), so the indexes are most of the
// server's work per run. A query on a dropped column still answers
// correctly, by a scan.
func trimVisibilityIndexes(cfg *config.SQL) error {
	schema, err := fs.ReadFile(temporalschema.Assets(), "sqlite/v3/visibility/schema.sql")
	if err != nil {
		return fmt.Errorf("temporalserver: visibility schema: %w", err)
	}
	db, err := sql.NewSQLAdminDB(sqlplugin.DbKindUnknown, cfg, resolver.NewNoopResolver(), log.NewNoopLogger(), metrics.NoopMetricsHandler)
	if err != nil {
		return fmt.Errorf("temporalserver: open database: %w", err)
	}
	defer func() { _ = db.Close() }()
	for _, m := range createIndex.FindAllSubmatch(schema, -1) {
		name := string(m[1])
		if keptVisibilityIndexes[name] {
			continue
		}
		if err := db.Exec("DROP INDEX IF EXISTS " + name); err != nil {
			return fmt.Errorf("temporalserver: drop index %s: %w", name, err)
		}
	}
	return nil
}

// FreePort returns a TCP port on ip that nothing listens on. It picks below
// Linux's ephemeral range (32768 and up): a port the kernel hands out for
// ":0" can meanwhile become the source port of an outgoing connection, and
// the service that then listens on it fails with "address already in use".
// It falls back to the kernel's choice when the lower range is full.
func FreePort(ip string) (int, error) {
	for range 200 {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("temporalserver: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func checkPort(ip string, port int, what string) error {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("temporalserver: %s port %s:%d is not free: %w", what, ip, port, err)
	}
	return l.Close()
}
