package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/replycache"
)

// Bounds on one Redis call, unless BUD_REDIS_URL sets its own
// (dial_timeout, read_timeout, write_timeout): a request's admission waits
// no longer on an unreachable Redis before it is decided without it.
const (
	redisDialTimeout = 500 * time.Millisecond
	redisIOTimeout   = 250 * time.Millisecond
)

// connectRedis opens BUD_REDIS_URL and checks that it answers, so that a
// wrong address or password fails the start rather than every request; it
// returns nil when the URL is empty: rate limits and concurrency are then
// counted per process.
func connectRedis(ctx context.Context, log *slog.Logger, cfg *config, service string) (*redis.Client, error) {
	if cfg.RedisURL == "" {
		log.Info("BUD_REDIS_URL is not set: rate limits and concurrency are counted in this process alone", "service", service)
		return nil, nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("BUD_REDIS_URL: %w", err)
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = redisDialTimeout
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = redisIOTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = redisIOTimeout
	}
	// A decision does not wait on retries: a script that timed out may
	// have run, and one outage is noticed at once, then Redis is tried
	// again a second later (package admission).
	if opts.MaxRetries == 0 {
		opts.MaxRetries = -1
	}
	if opts.DialerRetries == 0 {
		opts.DialerRetries = 1
	}
	opts.ClientName = "bud-" + service
	// go-redis logs every failed dial on its own logger, the process's
	// only one; admission logs an outage once, so go-redis's lines are
	// debug detail.
	redis.SetLogger(redisLogger{log})
	c := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("BUD_REDIS_URL: %s does not answer: %w", cfg.RedisURL, err)
	}
	return c, nil
}

// redisLogger passes go-redis's log lines to the service's log at debug
// level.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// newAdmitter is the process's one Admitter, which its gateway and its
// worker's model calls share, so that a deployment's limits count both:
// in Redis when rc is set (every process shares them), else in this
// process. The caller closes it once both have stopped.
func newAdmitter(log *slog.Logger, cfg *config, rc *redis.Client) *admission.Admitter {
	ac := admission.Config{Prefix: cfg.RedisPrefix, Logger: log}
	if rc != nil {
		// Not a nil *redis.Client in the interface, which would not be nil.
		ac.Redis = rc
	}
	return admission.New(ac)
}

// newReplyCache is the process's response cache, bounded in this process
// by BUD_CACHE_BYTES: in Redis when rc is set, shared by every gateway,
// with the entries this process has seen kept in front of it in memory
// (replycache.Tiered), else in this process alone.
func newReplyCache(log *slog.Logger, cfg *config, rc *redis.Client) (*replycache.Cache, error) {
	n, err := parseBytes(cfg.CacheBytes)
	if err != nil {
		return nil, fmt.Errorf("BUD_CACHE_BYTES: %w", err)
	}
	o := replycache.Options{Prefix: cfg.RedisPrefix + "cache:", Logger: log}
	if rc != nil {
		return replycache.New(replycache.NewTiered(replycache.NewMemory(n), replycache.NewRedis(rc, replycache.RedisOptions{})), o), nil
	}
	return replycache.New(replycache.NewMemory(n), o), nil
}

// parseBytes reads a positive size: a number of bytes, or of KiB, MiB or
// GiB.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if v, ok := strings.CutSuffix(t, suffix); ok {
			t, mult = strings.TrimSpace(v), m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a positive size such as 64MiB", s)
	}
	return n * mult, nil
}
