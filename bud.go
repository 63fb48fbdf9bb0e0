package bud

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits on user-supplied text.
const (
	MaxNameLen        = 100
	MaxDescriptionLen = 2000
	MaxURLLen         = 2048
	MaxSecretLen      = 4096
)

// namePattern is what a project or deployment name may look like: a
// deployment name is the `model` a client sends, so it stays URL- and
// shell-friendly.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]*$`)

// CheckName records a problem when name is not a valid resource name.
func CheckName(p *Problems, field, name string) {
	switch {
	case name == "":
		p.Add(field, "is required")
	case utf8.RuneCountInString(name) > MaxNameLen:
		p.Add(field, "must be at most %d characters", MaxNameLen)
	case !namePattern.MatchString(name):
		p.Add(field, "must start with a letter or digit and contain only letters, digits and . _ : / -")
	}
}

// ValidName reports whether CheckName accepts name. It refuses a name too
// long to be valid before looking at its characters, so a caller can check
// a name of any size before using it as a lookup key.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen*utf8.UTFMax {
		return false
	}
	return utf8.RuneCountInString(name) <= MaxNameLen && namePattern.MatchString(name)
}

// CheckText records a problem when s is longer than max characters.
func CheckText(p *Problems, field, s string, max int) {
	if utf8.RuneCountInString(s) > max {
		p.Add(field, "must be at most %d characters", max)
	}
}

// Project groups deployments and owns API keys.
type Project struct {
	ID          uuid.UUID `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Deployment kinds.
const (
	KindModel  = "model"
	KindPrompt = "prompt"
)

// Deployment is a name a caller can put in `model`, bound to what serves it.
type Deployment struct {
	ID            uuid.UUID       `json:"id"`
	ProjectID     uuid.UUID       `json:"project_id"`
	Name          string          `json:"name"`
	Kind          string          `json:"kind"`
	Upstream      *Upstream       `json:"upstream,omitempty"`
	Prompt        *PromptRef      `json:"prompt,omitempty"`
	DefaultParams json.RawMessage `json:"default_params"`
	Settings      Settings        `json:"settings"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
}

// Upstream is an OpenAI-compatible server behind a model deployment. The
// provider key itself is never returned, only whether one is set.
type Upstream struct {
	BaseURL   string `json:"base_url"`
	Model     string `json:"model"`
	APIKeySet bool   `json:"api_key_set"`
}

// PromptRef is what a prompt deployment serves: a prompt, and the version
// it is pinned to (nil follows the prompt's default version).
type PromptRef struct {
	ID      uuid.UUID `json:"id"`
	Version *int32    `json:"version"`
}

// CheckBaseURL records a problem when raw is not an absolute http(s) URL
// without userinfo: a password in a URL is a secret stored and returned in
// clear, where the API key is sealed and never shown.
func CheckBaseURL(p *Problems, field, raw string) {
	if raw == "" {
		p.Add(field, "is required")
		return
	}
	if len(raw) > MaxURLLen {
		p.Add(field, "must be at most %d characters", MaxURLLen)
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.Add(field, "must be an absolute http or https URL")
		return
	}
	if u.User != nil {
		p.Add(field, "must not hold credentials (user:password@): send the key as upstream.api_key")
		return
	}
	if u.RawQuery != "" || u.Fragment != "" {
		p.Add(field, "must not have a query or fragment")
	}
}

// urlPattern finds URLs in a text: a scheme, "://" and everything up to
// whitespace, a quote or an angle bracket. It may take trailing
// punctuation along, which only ever widens what is redacted.
var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>` + "`" + `]+`)

// RedactURLs returns s with the userinfo of every URL in it replaced by
// "REDACTED@", and all from its query or fragment on by "?REDACTED" or
// "#REDACTED": those are where providers and servers put credentials, and
// an error quotes a URL whole (net/http's `Post "https://host/p?token=…":
// …`). The scheme, host and path stay, so a person can still tell which
// server failed. It is the one rule for every text that leaves a process:
// callers' errors and log lines.
func RedactURLs(s string) string {
	return redactURLs(s, "REDACTED", false)
}

// RedactURLsKeepingUsers is RedactURLs for showing operators the URLs
// they set (`bud dev`'s banner): the same parts are hidden, but each reads
// xxxxx, as net/url's URL.Redacted writes it, and a user name before a
// password stays, so that the operator can tell which account a service
// uses. A lone userinfo (a token) is hidden whole.
func RedactURLsKeepingUsers(s string) string {
	return redactURLs(s, "xxxxx", true)
}

// redactURLs replaces what RedactURLs hides in s by hidden, keeping the
// user name before a password when keepUser is set.
func redactURLs(s, hidden string, keepUser bool) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlPattern.ReplaceAllStringFunc(s, func(u string) string { return redactURL(u, hidden, keepUser) })
}

// redactURL redacts one match of urlPattern as redactURLs says, by its
// text rather than by url.Parse: a URL that does not parse must be
// redacted too. A match may hold several URLs joined by commas (NATS
// takes a list): each URL that begins before the first one's query is
// redacted on its own.
func redactURL(u, hidden string, keepUser bool) string {
	i := strings.Index(u, "://") + len("://")
	scheme, rest := u[:i], u[i:]
	var next string
	if end := strings.IndexAny(rest, "?#"); end != 0 {
		head := rest
		if end > 0 {
			head = rest[:end]
		}
		if j := nextURL(head); j >= 0 {
			rest, next = rest[:j], rest[j:]
		}
	}
	authority := rest
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		authority = rest[:end]
	}
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo := hidden
		if user, _, password := strings.Cut(authority[:at], ":"); keepUser && password {
			userinfo = user + ":" + hidden
		}
		rest = userinfo + rest[at:]
	}
	if q := strings.IndexAny(rest, "?#"); q >= 0 {
		rest = rest[:q+1] + hidden
	}
	if next != "" {
		return scheme + rest + redactURL(next, hidden, keepUser)
	}
	return scheme + rest
}

// nextURL is where the second URL in s begins (its scheme's first
// letter), or -1 when s holds no other "scheme://".
func nextURL(s string) int {
	j := strings.Index(s, "://")
	if j < 0 {
		return -1
	}
	start := j
	for start > 0 && isSchemeByte(s[start-1]) {
		start--
	}
	// A scheme begins with a letter.
	for start < j && !isLetter(s[start]) {
		start++
	}
	if start == j {
		return -1
	}
	return start
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

func isSchemeByte(c byte) bool {
	return isLetter(c) || '0' <= c && c <= '9' || c == '+' || c == '.' || c == '-'
}

// Settings says how a deployment is served. The gateway enforces the
// rate limit and max_concurrency on every request that reaches the
// deployment (package admission).
type Settings struct {
	MinConcurrency int `json:"min_concurrency"`
	// MaxConcurrency bounds the deployment's requests in flight, across
	// every gateway process when they share Redis.
	MaxConcurrency int `json:"max_concurrency"`
	// QueueTimeoutMS is how long a request waits for one of those slots
	// before it is answered 429; 0 answers at once.
	QueueTimeoutMS int               `json:"queue_timeout_ms"`
	Autoscale      bool              `json:"autoscale"`
	Cache          CacheSettings     `json:"cache"`
	RateLimit      RateLimitSettings `json:"rate_limit"`
}

// CacheSettings turns response caching on with a time to live.
type CacheSettings struct {
	Enabled    bool `json:"enabled"`
	TTLSeconds int  `json:"ttl_seconds"`
	// Nondeterministic caches requests that sample (temperature > 0
	// without a seed) too. Their answers differ from call to call, so a
	// cached one stands in for a different answer the caller would have
	// got: only a deployment that says so explicitly gets that.
	Nondeterministic bool `json:"nondeterministic"`
}

// RateLimitSettings are token buckets, enforced when Enabled. Requests:
// refilled by requests_per_minute, holding burst (0: a minute's worth,
// requests_per_minute). Tokens: refilled by tokens_per_minute and holding
// as much, charged with each reply's usage after it, refusing requests
// while it is empty. A zero rate is no limit of that kind.
type RateLimitSettings struct {
	Enabled           bool `json:"enabled"`
	RequestsPerMinute int  `json:"requests_per_minute"`
	Burst             int  `json:"burst"`
	TokensPerMinute   int  `json:"tokens_per_minute"`
}

// AutoscaleIsTheWorkers is why settings.autoscale must be false, in a
// deployment's settings and a prompt document's: one task queue and one
// pool of workers serve every deployment's runs, so what scales is the
// workers, for all of them; a deployment's share of them is its
// min_concurrency (runs.Priority), its cap its max_concurrency.
const AutoscaleIsTheWorkers = "must be false: autoscaling is a setting of the BudPrompt workers, which serve every deployment's runs " +
	"(BUD_WORKER_AUTOSCALE=on, and an external scaler on their task queue's backlog); a deployment's share of the workers is its min_concurrency"

// DefaultSettings are the settings of a deployment created without any.
func DefaultSettings() Settings {
	return Settings{MinConcurrency: 0, MaxConcurrency: 100}
}

// Bounds on settings; beyond them a value is surely a mistake.
const (
	MaxConcurrencyLimit = 100000
	MaxCacheTTLSeconds  = 30 * 24 * 3600
	MaxRequestsPerMin   = 10_000_000
	MaxTokensPerMin     = 10_000_000_000
	// MaxQueueTimeoutMS bounds a wait for a concurrency slot: a waiting
	// request holds its connection.
	MaxQueueTimeoutMS = 60_000
)

// Check records every problem of s under the field prefix.
func (s Settings) Check(p *Problems, prefix string) {
	if s.MinConcurrency < 0 {
		p.Add(prefix+".min_concurrency", "must be >= 0")
	}
	if s.MaxConcurrency < 1 || s.MaxConcurrency > MaxConcurrencyLimit {
		p.Add(prefix+".max_concurrency", "must be between 1 and %d", MaxConcurrencyLimit)
	}
	if s.MinConcurrency > s.MaxConcurrency && s.MaxConcurrency >= 1 {
		p.Add(prefix+".min_concurrency", "must not exceed max_concurrency (%d)", s.MaxConcurrency)
	}
	if s.QueueTimeoutMS < 0 || s.QueueTimeoutMS > MaxQueueTimeoutMS {
		p.Add(prefix+".queue_timeout_ms", "must be between 0 and %d", MaxQueueTimeoutMS)
	}
	if s.Cache.TTLSeconds < 0 || s.Cache.TTLSeconds > MaxCacheTTLSeconds {
		p.Add(prefix+".cache.ttl_seconds", "must be between 0 and %d", MaxCacheTTLSeconds)
	} else if s.Cache.Enabled && s.Cache.TTLSeconds == 0 {
		p.Add(prefix+".cache.ttl_seconds", "must be > 0 when the cache is enabled")
	}
	rl := s.RateLimit
	checkRates(p, prefix+".rate_limit", rl.RequestsPerMinute, rl.Burst, rl.TokensPerMinute, rl.Enabled)
	if rl.Enabled && rl.RequestsPerMinute == 0 && rl.TokensPerMinute == 0 {
		p.Add(prefix+".rate_limit.requests_per_minute", "must be > 0 when the rate limit is enabled (or set tokens_per_minute)")
	}
}

// checkRates records problems of a rate limit's values under prefix: each
// within bounds, and, for a limit in force (enabled), no burst without a
// request rate, whose bucket it sizes.
func checkRates(p *Problems, prefix string, rpm, burst, tpm int, enabled bool) {
	if rpm < 0 || rpm > MaxRequestsPerMin {
		p.Add(prefix+".requests_per_minute", "must be between 0 and %d", MaxRequestsPerMin)
	}
	if burst < 0 || burst > MaxRequestsPerMin {
		p.Add(prefix+".burst", "must be between 0 and %d", MaxRequestsPerMin)
	} else if enabled && burst > 0 && rpm == 0 {
		p.Add(prefix+".burst", "must be 0 without requests_per_minute: it is the size of the requests' bucket")
	}
	if tpm < 0 || tpm > MaxTokensPerMin {
		p.Add(prefix+".tokens_per_minute", "must be between 0 and %d", MaxTokensPerMin)
	}
}

// KeyRateLimit is an API key's own rate limit: the same token buckets as
// a deployment's (RateLimitSettings), kept per key across every deployment
// the key calls, on top of each deployment's.
type KeyRateLimit struct {
	RequestsPerMinute int `json:"requests_per_minute"`
	Burst             int `json:"burst"`
	TokensPerMinute   int `json:"tokens_per_minute"`
}

// Check records every problem of l under the field prefix. A limit must
// limit something: a key without one has none (null), not a zero one.
func (l KeyRateLimit) Check(p *Problems, prefix string) {
	checkRates(p, prefix, l.RequestsPerMinute, l.Burst, l.TokensPerMinute, true)
	if l.RequestsPerMinute == 0 && l.TokensPerMinute == 0 {
		p.Add(prefix, "must set requests_per_minute or tokens_per_minute; send null for no limit")
	}
}

// paramKinds lists the OpenAI chat parameters a deployment may default, with
// the JSON kind each must have. Others are kept and passed through untouched.
var paramKinds = map[string]string{
	"temperature":           "number",
	"top_p":                 "number",
	"max_tokens":            "integer",
	"max_completion_tokens": "integer",
	"frequency_penalty":     "number",
	"presence_penalty":      "number",
	"seed":                  "integer",
	"n":                     "integer",
	"stop":                  "stop",
	"logprobs":              "boolean",
	"top_logprobs":          "integer",
	"parallel_tool_calls":   "boolean",
	"user":                  "string",
	"logit_bias":            "object",
	"response_format":       "object",
	"reasoning_effort":      "string",
}

// perRequest are fields that belong to one request, never to a deployment.
var perRequest = map[string]bool{"model": true, "messages": true, "stream": true, "stream_options": true}

// pinnedFields are the request fields whose values are not only the
// caller's: the model the deployment names, the messages, response format
// and tools a prompt sets, and whether and how the reply streams, which
// the one who reads the reply must know.
var pinnedFields = [...]string{"model", "messages", "stream", "stream_options", "response_format", "tools"}

// Respelled reports whether k is a pinned field's name spelled another way,
// such as "Model" or "STREAM". An upstream that matches keys
// case-insensitively, as Go's encoding/json does, reads such a key as the
// field itself, whichever of the spellings comes last: a request body
// keeps a pinned field under its exact name only, and drops every other
// spelling. The worker's calls and the gateway's proxy both follow it, and
// a deployment's defaults may not hold such a key (CheckDefaultParams).
func Respelled(k string) bool {
	for _, name := range pinnedFields {
		if k != name && strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// CheckDefaultParams records problems in a deployment's default parameters:
// they must form a JSON object whose known OpenAI parameters have the right
// types and ranges, with no per-request field in any spelling.
func CheckDefaultParams(p *Problems, field string, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	var params map[string]any
	if err := json.Unmarshal(raw, &params); err != nil || params == nil {
		p.Add(field, "must be a JSON object")
		return
	}
	for k, v := range params {
		f := field + "." + k
		if perRequest[k] {
			p.Add(f, "is set per request and cannot be a default")
			continue
		}
		if Respelled(k) {
			p.Add(f, "is another spelling of a field every request sets under its own name, and is never sent")
			continue
		}
		switch paramKinds[k] {
		case "number":
			n, ok := v.(float64)
			if !ok {
				p.Add(f, "must be a number")
				continue
			}
			checkRange(p, f, k, n)
		case "integer":
			n, ok := v.(float64)
			if !ok || n != float64(int64(n)) {
				p.Add(f, "must be an integer")
				continue
			}
			checkRange(p, f, k, n)
		case "boolean":
			if _, ok := v.(bool); !ok {
				p.Add(f, "must be a boolean")
			}
		case "string":
			if _, ok := v.(string); !ok {
				p.Add(f, "must be a string")
			}
		case "object":
			if _, ok := v.(map[string]any); !ok {
				p.Add(f, "must be an object")
			}
		case "stop":
			switch s := v.(type) {
			case string:
			case []any:
				if len(s) > 4 {
					p.Add(f, "must have at most 4 sequences")
				}
				for _, e := range s {
					if _, ok := e.(string); !ok {
						p.Add(f, "must be a string or a list of strings")
						break
					}
				}
			default:
				p.Add(f, "must be a string or a list of strings")
			}
		}
	}
}

func checkRange(p *Problems, f, k string, n float64) {
	lo, hi := 0.0, 0.0
	switch k {
	case "temperature":
		lo, hi = 0, 2
	case "top_p":
		lo, hi = 0, 1
	case "frequency_penalty", "presence_penalty":
		lo, hi = -2, 2
	case "max_tokens", "max_completion_tokens", "n":
		lo, hi = 1, 1<<31-1
	case "top_logprobs":
		lo, hi = 0, 20
	default:
		return
	}
	if n < lo || n > hi {
		p.Add(f, "must be between %s and %s", fmtNum(lo), fmtNum(hi))
	}
}

func fmtNum(f float64) string { return fmt.Sprintf("%g", f) }

// APIKey is a project's credential for the gateway. Its secret is shown once
// at creation; afterwards only Prefix identifies it to a person.
type APIKey struct {
	ID         uuid.UUID  `json:"id"`
	ProjectID  uuid.UUID  `json:"project_id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	Revoked    bool       `json:"revoked"`
	// RateLimit is the key's own limit; nil when it has none.
	RateLimit *KeyRateLimit `json:"rate_limit"`
}

// Usable reports whether the key may authenticate at time now.
func (k APIKey) Usable(now time.Time) bool {
	return k.RevokedAt == nil && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}
