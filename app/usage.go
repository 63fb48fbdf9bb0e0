package app

import (
	"context"
	"math"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud"
	"github.com/budhq/bud/db/dbsqlc"
	"github.com/budhq/bud/usage"
)

// Bounds of a usage report.
const (
	defaultUsageRange = 24 * time.Hour
	// A report spans at most 31 days of hours or 366 days of days.
	maxHourlyUsageRange = 31 * 24 * time.Hour
	maxDailyUsageRange  = 366 * 24 * time.Hour
	// maxUsageRows bounds a report's rows: ranges are bounded, but the
	// number of keys or versions a row per bucket is made for is not.
	maxUsageRows = 10_000
	// usageFlushTimeout bounds the write of this process's usage that
	// precedes a report.
	usageFlushTimeout = 5 * time.Second
)

// Usage groupings and intervals, as the query parameters spell them.
const (
	usageByDeployment    = "deployment"
	usageByKey           = "key"
	usageByPromptVersion = "prompt_version"
	usageHour            = "hour"
	usageDay             = "day"
)

// UsageReport answers GET /api/projects/{project_id}/usage.
type UsageReport struct {
	// From and To are the range covered, from (inclusive) to (exclusive):
	// the range asked for widened to whole intervals.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Interval is hour or day (UTC days).
	Interval string `json:"interval"`
	// GroupBy is deployment, key or prompt_version; null when each
	// interval has one row.
	GroupBy *string `json:"group_by"`
	// Data has a row per interval and group that saw a request, by
	// interval, then by the group's name (none first) and id; intervals
	// without requests have no row.
	Data []UsageRow `json:"data"`
	// Totals are the sums over the whole range.
	Totals UsageCounts `json:"totals"`
}

// UsageRow is one interval's usage for one group.
type UsageRow struct {
	// Bucket is the start of the interval.
	Bucket time.Time `json:"bucket"`
	// The group, with group_by=deployment, key or prompt_version. Its id
	// is null for requests without one (a chat completion runs no prompt;
	// a playground run has no key); its name is null once deleted.
	Deployment *UsageDeployment `json:"deployment,omitempty"`
	APIKey     *UsageAPIKey     `json:"api_key,omitempty"`
	Prompt     *UsagePrompt     `json:"prompt,omitempty"`
	UsageCounts
}

// UsageDeployment names a row's deployment.
type UsageDeployment struct {
	ID   *uuid.UUID `json:"id"`
	Name *string    `json:"name"`
}

// UsageAPIKey names a row's API key.
type UsageAPIKey struct {
	ID     *uuid.UUID `json:"id"`
	Name   *string    `json:"name"`
	Prefix *string    `json:"prefix"`
}

// UsagePrompt names a row's prompt version.
type UsagePrompt struct {
	ID      *uuid.UUID `json:"id"`
	Name    *string    `json:"name"`
	Version *int32     `json:"version"`
}

// UsageCounts are what usage counts of a set of requests. Latency leaves
// out rate-limited requests, which are refused at once; it is null when
// every request was. The percentiles are estimated from a histogram
// (usage.LatencyBucketBounds), within one bucket's width.
type UsageCounts struct {
	Requests     int64    `json:"requests"`
	InputTokens  int64    `json:"input_tokens"`
	OutputTokens int64    `json:"output_tokens"`
	Errors       int64    `json:"errors"`
	CacheHits    int64    `json:"cache_hits"`
	RateLimited  int64    `json:"rate_limited"`
	LatencyMSAvg *float64 `json:"latency_ms_avg"`
	LatencyMSP50 *float64 `json:"latency_ms_p50"`
	LatencyMSP95 *float64 `json:"latency_ms_p95"`
	LatencyMSMax *float64 `json:"latency_ms_max"`
}

// usageSums accumulates UsageCounts with the latency still a histogram.
type usageSums struct {
	requests, inputTokens, outputTokens, errors, cacheHits, rateLimited int64
	latency                                                             usage.Latency
}

func (u *usageSums) add(o usageSums) {
	u.requests += o.requests
	u.inputTokens += o.inputTokens
	u.outputTokens += o.outputTokens
	u.errors += o.errors
	u.cacheHits += o.cacheHits
	u.rateLimited += o.rateLimited
	u.latency.Add(o.latency)
}

func (u usageSums) counts() UsageCounts {
	c := UsageCounts{
		Requests: u.requests, InputTokens: u.inputTokens, OutputTokens: u.outputTokens,
		Errors: u.errors, CacheHits: u.cacheHits, RateLimited: u.rateLimited,
	}
	if u.latency.Count > 0 {
		c.LatencyMSAvg = milliseconds(u.latency.Mean())
		c.LatencyMSP50 = milliseconds(u.latency.Quantile(0.5))
		c.LatencyMSP95 = milliseconds(u.latency.Quantile(0.95))
		c.LatencyMSMax = milliseconds(u.latency.Max)
	}
	return c
}

// milliseconds is d in milliseconds to the microsecond, which is what
// rollups keep.
func milliseconds(d time.Duration) *float64 {
	ms := math.Round(float64(d)/float64(time.Microsecond)) / 1000
	return &ms
}

// usageParams reads ?from= and ?to= (RFC 3339; the last 24 hours by
// default), ?interval= (hour, the default, or day) and ?group_by=
// (deployment, key or prompt_version; none by default), and widens the
// range to whole intervals.
func usageParams(r *http.Request, now time.Time) (dbsqlc.UsageReportParams, error) {
	var p bud.Problems
	q := r.URL.Query()
	arg := dbsqlc.UsageReportParams{Unit: usageHour}
	switch v := q.Get("interval"); v {
	case "", usageHour:
	case usageDay:
		arg.Unit = usageDay
	default:
		p.Add("interval", "must be hour or day")
	}
	switch v := q.Get("group_by"); v {
	case "":
	case usageByDeployment:
		arg.ByDeployment = true
	case usageByKey:
		arg.ByApiKey = true
	case usageByPromptVersion:
		arg.ByPromptVersion = true
	default:
		p.Add("group_by", "must be one of deployment, key, prompt_version")
	}
	parseTime := func(name string) (time.Time, bool) {
		raw := q.Get(name)
		if raw == "" {
			return time.Time{}, false
		}
		t, err := time.Parse(time.RFC3339, raw)
		if err != nil {
			p.Add(name, "must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
			return time.Time{}, false
		}
		return t, true
	}
	from, hasFrom := parseTime("from")
	to, hasTo := parseTime("to")
	if !hasTo {
		to = now
	}
	if !hasFrom {
		from = to.Add(-defaultUsageRange)
	}
	if err := p.Err(); err != nil {
		return arg, err
	}
	if !to.After(from) {
		p.Add("to", "must be after from")
		return arg, p.Err()
	}
	step, limit := time.Hour, maxHourlyUsageRange
	if arg.Unit == usageDay {
		step, limit = 24*time.Hour, maxDailyUsageRange
	}
	// Truncate counts from the zero time, in UTC, so hours and days start
	// on UTC boundaries.
	arg.FromHour = from.UTC().Truncate(step)
	arg.ToHour = to.UTC().Truncate(step)
	if arg.ToHour.Before(to) {
		arg.ToHour = arg.ToHour.Add(step)
	}
	if arg.ToHour.Sub(arg.FromHour) > limit {
		p.Add("from", "must be at most %d days before to with interval=%s", int(limit/(24*time.Hour)), arg.Unit)
	}
	return arg, p.Err()
}

// getUsage answers a project's usage by interval and group, with totals.
func (s *server) getUsage(w http.ResponseWriter, r *http.Request) {
	arg, err := usageParams(r, time.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.usage != nil {
		// What this process counted is then in the answer at once; other
		// processes' counts arrive with their next write.
		// The write is not cut short with the request: a write of unknown
		// outcome is written again, and would count twice.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), usageFlushTimeout)
		err := s.usage.Flush(ctx)
		cancel()
		if err != nil {
			s.log.WarnContext(r.Context(), "usage report: write this process's usage first", "request_id", requestIDFrom(r.Context()), "err", err)
		}
	}
	arg.ProjectID = projectFrom(r).ID
	arg.MaxRows = maxUsageRows + 1
	rows, err := s.q.UsageReport(r.Context(), arg)
	if err != nil {
		s.writeError(w, r, bud.Internal("usage report", err))
		return
	}
	if len(rows) > maxUsageRows {
		s.writeError(w, r, &bud.Error{
			Code:    bud.EINVALID,
			Message: "the report would have more than 10000 rows; narrow the range, use interval=day or group by less",
			Fields:  map[string]string{"from": "makes a report of more than 10000 rows"},
		})
		return
	}
	out := UsageReport{From: arg.FromHour, To: arg.ToHour, Interval: arg.Unit, Data: make([]UsageRow, 0, len(rows))}
	var totals usageSums
	for _, row := range rows {
		sums := usageSums{
			requests: row.Requests, inputTokens: row.InputTokens, outputTokens: row.OutputTokens,
			errors: row.Errors, cacheHits: row.CacheHits, rateLimited: row.RateLimited,
			latency: usage.LatencyFromRow(row.LatencyUsSum, row.LatencyUsMax, row.LatencyBuckets),
		}
		totals.add(sums)
		u := UsageRow{Bucket: row.Bucket.UTC(), UsageCounts: sums.counts()}
		switch {
		case arg.ByDeployment:
			u.Deployment = &UsageDeployment{ID: usageID(row.DeploymentID), Name: row.DeploymentName}
		case arg.ByApiKey:
			u.APIKey = &UsageAPIKey{ID: usageID(row.ApiKeyID), Name: row.ApiKeyName, Prefix: row.ApiKeyPrefix}
		case arg.ByPromptVersion:
			u.Prompt = &UsagePrompt{ID: usageID(row.PromptID), Name: row.PromptName}
			if row.PromptVersion != 0 {
				u.Prompt.Version = &row.PromptVersion
			}
		}
		out.Data = append(out.Data, u)
	}
	out.Totals = totals.counts()
	if g := r.URL.Query().Get("group_by"); g != "" {
		out.GroupBy = &g
	}
	writeJSON(w, http.StatusOK, out)
}

// usageID is a report's id, null for the zero UUID that stands for none.
func usageID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}
