package bud_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud"
)

func TestProblemsCollectsEveryField(t *testing.T) {
	t.Parallel()
	var p bud.Problems
	require.NoError(t, p.Err())
	bud.CheckName(&p, "name", "")
	bud.CheckBaseURL(&p, "upstream.base_url", "ftp://x")
	bud.Settings{MinConcurrency: 5, MaxConcurrency: 2, Cache: bud.CacheSettings{Enabled: true}}.Check(&p, "settings")
	bud.CheckDefaultParams(&p, "default_params", json.RawMessage(`{"temperature": 3, "model": "x", "stop": [1]}`))
	err := p.Err()
	require.Equal(t, bud.EINVALID, bud.ErrorCode(err))
	fields := bud.ErrorFields(err)
	for _, f := range []string{"name", "upstream.base_url", "settings.min_concurrency", "settings.cache.ttl_seconds",
		"default_params.temperature", "default_params.model", "default_params.stop"} {
		require.Contains(t, fields, f)
	}
	require.True(t, strings.Contains(bud.ErrorMessage(err), "settings.min_concurrency"))
}

// TestDefaultParamsRefuseRespelledFields: a default under another spelling
// of a field every request sets is never sent (bud.Respelled), so it is
// refused rather than kept; the fields' own names as defaults stay allowed
// where they were.
func TestDefaultParamsRefuseRespelledFields(t *testing.T) {
	t.Parallel()
	var p bud.Problems
	bud.CheckDefaultParams(&p, "default_params", json.RawMessage(
		`{"Stream": true, "MODEL": "x", "Tools": [], "Response_Format": {}, "temperature": 0.2, "response_format": {"type": "json_object"}, "tools": []}`))
	require.ElementsMatch(t, []string{"default_params.Stream", "default_params.MODEL", "default_params.Tools", "default_params.Response_Format"},
		slices.Collect(maps.Keys(bud.ErrorFields(p.Err()))))
}

func TestInternalErrorsKeepTheirCause(t *testing.T) {
	t.Parallel()
	err := bud.Internal("load thing", json.Unmarshal([]byte("{"), &struct{}{}))
	require.Equal(t, bud.EINTERNAL, bud.ErrorCode(err))
	require.Equal(t, "internal error", bud.ErrorMessage(err), "the cause never reaches a caller")
	require.Contains(t, err.Error(), "load thing", "but it is in the log line")
}

func TestAPIKeySecret(t *testing.T) {
	t.Parallel()
	secret, display, hash := bud.NewAPIKeySecret()
	require.True(t, bud.LooksLikeAPIKey(secret))
	require.True(t, strings.HasPrefix(secret, display))
	require.Len(t, display, len("bud-")+8)
	require.Equal(t, hash, bud.HashAPIKey(secret))
	other, _, _ := bud.NewAPIKeySecret()
	require.NotEqual(t, secret, other)

	past := time.Now().Add(-time.Minute)
	require.False(t, bud.APIKey{ExpiresAt: &past}.Usable(time.Now()))
	require.True(t, bud.APIKey{}.Usable(time.Now()))
}

func TestValidNameAgreesWithCheckName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "m", "gpt-4o", "org/model:v1.2_x", "-x", "a b", "é",
		strings.Repeat("a", bud.MaxNameLen), strings.Repeat("a", bud.MaxNameLen+1), strings.Repeat("é", 200)} {
		var p bud.Problems
		bud.CheckName(&p, "name", name)
		require.Equal(t, p.Err() == nil, bud.ValidName(name), "%q", name)
	}
}

// TestRedactURLs: a URL's userinfo and everything from its query or
// fragment on are gone, whatever the scheme and wherever it stands in the
// text; each URL of a comma-joined list is redacted on its own.
func TestRedactURLs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`Post "https://user:pass@host:8443/mcp?token=secret": dial tcp: refused`: `Post "https://REDACTED@host:8443/mcp?REDACTED": dial tcp: refused`,
		"MCP server at http://h/p#access_token=secret could not be reached":      "MCP server at http://h/p#REDACTED could not be reached",
		"at https://user@h?x=1 and wss://h/a/b":                                  "at https://REDACTED@h?REDACTED and wss://h/a/b",
		"no URL here: a@b?c":                                                     "no URL here: a@b?c",
		"https://h/users/@me stays":                                              "https://h/users/@me stays",
		"nats://a:secret1@h1:4222,nats://b:secret2@h2:4222":                      "nats://REDACTED@h1:4222,nats://REDACTED@h2:4222",
		"tls://u:secret@h,h2:4222/x?y=1":                                         "tls://REDACTED@h,h2:4222/x?REDACTED",
		"https://h/go?to=https://u:secret@elsewhere/?t=1":                        "https://h/go?REDACTED",
		"postgres://bud:secret@db:5432/bud?sslmode=require&password=x":           "postgres://REDACTED@db:5432/bud?REDACTED",
	} {
		require.Equal(t, want, bud.RedactURLs(in), in)
	}
}

// TestRedactURLsKeepingUsers: what RedactURLs hides reads xxxxx, a user
// name before a password stays, and a lone userinfo (a NATS token) is
// hidden whole, in each URL of a comma-joined list.
func TestRedactURLsKeepingUsers(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"nats://bud:s3cret@127.0.0.1:4223, tls://t0ken@nats.example:4222,nats://plain:4222": "nats://bud:xxxxx@127.0.0.1:4223, tls://xxxxx@nats.example:4222,nats://plain:4222",
		"nats://a:secret1@h1:4222,nats://b:secret2@h2:4222":                                 "nats://a:xxxxx@h1:4222,nats://b:xxxxx@h2:4222",
		"https://user:pass@host:8443/mcp?token=secret":                                      "https://user:xxxxx@host:8443/mcp?xxxxx",
		"http://h/p#access_token=secret":                                                    "http://h/p#xxxxx",
		"nats://plain:4222":                                                                 "nats://plain:4222",
	} {
		require.Equal(t, want, bud.RedactURLsKeepingUsers(in), in)
	}
}

func TestRateLimitChecks(t *testing.T) {
	t.Parallel()
	fields := func(check func(p *bud.Problems)) []string {
		var p bud.Problems
		check(&p)
		return slices.Sorted(maps.Keys(bud.ErrorFields(p.Err())))
	}
	settings := func(s bud.Settings) []string {
		return fields(func(p *bud.Problems) { s.Check(p, "settings") })
	}
	ok := bud.DefaultSettings()
	require.Empty(t, settings(ok))
	tokensOnly := ok
	tokensOnly.RateLimit = bud.RateLimitSettings{Enabled: true, TokensPerMinute: 1000}
	require.Empty(t, settings(tokensOnly), "a token limit alone is a limit")
	queued := ok
	queued.QueueTimeoutMS = bud.MaxQueueTimeoutMS
	require.Empty(t, settings(queued))

	bad := ok
	bad.QueueTimeoutMS = bud.MaxQueueTimeoutMS + 1
	bad.RateLimit = bud.RateLimitSettings{Enabled: true, Burst: 3}
	require.Equal(t, []string{"settings.queue_timeout_ms", "settings.rate_limit.burst", "settings.rate_limit.requests_per_minute"}, settings(bad))
	bad = ok
	bad.RateLimit = bud.RateLimitSettings{TokensPerMinute: -1}
	require.Equal(t, []string{"settings.rate_limit.tokens_per_minute"}, settings(bad), "checked even while disabled")

	key := func(l bud.KeyRateLimit) []string {
		return fields(func(p *bud.Problems) { l.Check(p, "rate_limit") })
	}
	require.Empty(t, key(bud.KeyRateLimit{RequestsPerMinute: 60, Burst: 10}))
	require.Empty(t, key(bud.KeyRateLimit{TokensPerMinute: bud.MaxTokensPerMin}))
	require.Equal(t, []string{"rate_limit"}, key(bud.KeyRateLimit{}))
	require.Equal(t, []string{"rate_limit.burst", "rate_limit.tokens_per_minute"}, key(bud.KeyRateLimit{Burst: 1, TokensPerMinute: bud.MaxTokensPerMin + 1}))
}
