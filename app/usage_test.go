package app_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/app"
	"github.com/budhq/bud/usage"
)

// noDocuments is the state store of tests that never reach a prompt
// document; it refuses every call, so one that does fails loudly.
type noDocuments struct{}

var errNoDocuments = errors.New("usage tests keep no prompt documents")

func (noDocuments) Put(context.Context, string, []byte) error   { return errNoDocuments }
func (noDocuments) Get(context.Context, string) ([]byte, error) { return nil, errNoDocuments }
func (noDocuments) Delete(context.Context, string) error        { return errNoDocuments }
func (noDocuments) DeleteMany(context.Context, []string) error  { return errNoDocuments }

func withoutDocuments(c *app.Config) { c.Documents = noDocuments{} }

// usageSetup is an API whose Config.Usage is a recorder on its database.
func usageSetup(t *testing.T) (*bundle, *usage.Recorder) {
	t.Helper()
	var rec *usage.Recorder
	b := setup(t, withoutDocuments, func(c *app.Config) {
		var err error
		rec, err = usage.New(usage.Config{Pool: c.Pool})
		require.NoError(t, err)
		c.Usage = rec
	})
	return b, rec
}

func usagePath(projectID uuid.UUID, params url.Values) string {
	return "/api/projects/" + projectID.String() + "/usage?" + params.Encode()
}

func TestUsageReport(t *testing.T) {
	t.Parallel()
	b, rec := usageSetup(t)
	p := b.createProject(t, "proj")
	other := b.createProject(t, "other")
	chat := b.createDeployment(t, p.ID, modelBody("chat", nil))
	embed := b.createDeployment(t, p.ID, modelBody("embed", nil))
	key := b.createKey(t, p.ID, "ci key")
	promptID := uuid.New()

	day := time.Date(2026, 2, 10, 0, 0, 0, 0, time.UTC)
	at := func(h, m int) time.Time { return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	// Day 1, 22:xx: chat through the key; 23:xx: embed with no key (the
	// playground). Day 2, 00:xx: chat, a prompt version, rate limited once.
	for i := range 10 {
		rec.Record(usage.Event{ProjectID: p.ID, DeploymentID: chat.ID, Deployment: "chat", APIKeyID: key.ID,
			InputTokens: 100, OutputTokens: 10, Error: i == 0, CacheHit: i < 2,
			Latency: time.Duration(10*(i+1)) * time.Millisecond, At: at(22, i)})
	}
	for i := range 4 {
		rec.Record(usage.Event{ProjectID: p.ID, DeploymentID: embed.ID, Deployment: "embed",
			InputTokens: 7, Latency: 2 * time.Millisecond, At: at(23, 30+i)})
	}
	for i := range 3 {
		rec.Record(usage.Event{ProjectID: p.ID, DeploymentID: chat.ID, Deployment: "chat", APIKeyID: key.ID,
			PromptID: promptID, PromptVersion: 2, InputTokens: 50, OutputTokens: 5, RateLimited: i == 2,
			Latency: time.Second, At: at(24, i)})
	}
	// Another project's usage stays out of this one's report.
	rec.Record(usage.Event{ProjectID: other.ID, DeploymentID: uuid.New(), InputTokens: 1000, At: at(22, 0)})

	q := url.Values{"from": {at(0, 0).Format(time.RFC3339)}, "to": {at(48, 0).Format(time.RFC3339)}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}

	// By hour and deployment: the report wrote the recorder's counts
	// first, so they are all there without waiting for a flush.
	r := decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, with("group_by", "deployment")), nil), http.StatusOK)
	require.Equal(t, at(0, 0), r.From)
	require.Equal(t, at(48, 0), r.To)
	require.Equal(t, "hour", r.Interval)
	require.Equal(t, "deployment", *r.GroupBy)
	require.Len(t, r.Data, 3)
	require.Equal(t, at(22, 0), r.Data[0].Bucket)
	require.Equal(t, chat.ID, *r.Data[0].Deployment.ID)
	require.Equal(t, "chat", *r.Data[0].Deployment.Name)
	require.Nil(t, r.Data[0].APIKey)
	require.Nil(t, r.Data[0].Prompt)
	c := r.Data[0].UsageCounts
	require.Equal(t, app.UsageCounts{Requests: 10, InputTokens: 1000, OutputTokens: 100, Errors: 1, CacheHits: 2,
		LatencyMSAvg: c.LatencyMSAvg, LatencyMSP50: c.LatencyMSP50, LatencyMSP95: c.LatencyMSP95, LatencyMSMax: c.LatencyMSMax}, c)
	require.InDelta(t, 55, *c.LatencyMSAvg, 0.001)
	require.InDelta(t, 100, *c.LatencyMSMax, 0.001)
	// The histogram puts the median (50 ms) and the 95th (100 ms) within
	// a bucket: 25-50 ms and 50-100 ms.
	require.GreaterOrEqual(t, *c.LatencyMSP50, 25.0)
	require.LessOrEqual(t, *c.LatencyMSP50, 50.0)
	require.GreaterOrEqual(t, *c.LatencyMSP95, 50.0)
	require.LessOrEqual(t, *c.LatencyMSP95, 100.0)
	require.Equal(t, at(23, 0), r.Data[1].Bucket)
	require.Equal(t, "embed", *r.Data[1].Deployment.Name)
	require.EqualValues(t, 4, r.Data[1].Requests)
	require.InDelta(t, 2, *r.Data[1].LatencyMSAvg, 0.001)
	require.Equal(t, at(24, 0), r.Data[2].Bucket)
	require.EqualValues(t, 3, r.Data[2].Requests)
	require.EqualValues(t, 1, r.Data[2].RateLimited)
	require.InDelta(t, 1000, *r.Data[2].LatencyMSAvg, 0.001, "rate-limited requests are not timed")
	require.Equal(t, app.UsageCounts{Requests: 17, InputTokens: 1178, OutputTokens: 115, Errors: 1, CacheHits: 2, RateLimited: 1,
		LatencyMSAvg: r.Totals.LatencyMSAvg, LatencyMSP50: r.Totals.LatencyMSP50, LatencyMSP95: r.Totals.LatencyMSP95, LatencyMSMax: r.Totals.LatencyMSMax}, r.Totals)
	require.InDelta(t, (550.0+8+2000)/16, *r.Totals.LatencyMSAvg, 0.001)
	require.InDelta(t, 1000, *r.Totals.LatencyMSMax, 0.001)

	// By UTC day: days are summed from hours.
	r = decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, with("group_by", "deployment", "interval", "day")), nil), http.StatusOK)
	require.Equal(t, "day", r.Interval)
	require.Len(t, r.Data, 3)
	require.Equal(t, day, r.Data[0].Bucket)
	require.Equal(t, "chat", *r.Data[0].Deployment.Name)
	require.EqualValues(t, 10, r.Data[0].Requests)
	require.Equal(t, day, r.Data[1].Bucket)
	require.Equal(t, "embed", *r.Data[1].Deployment.Name)
	require.Equal(t, day.Add(24*time.Hour), r.Data[2].Bucket)
	require.EqualValues(t, 3, r.Data[2].Requests)
	require.EqualValues(t, 17, r.Totals.Requests)

	// By key: the playground's requests have none.
	r = decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, with("group_by", "key", "interval", "day")), nil), http.StatusOK)
	require.Len(t, r.Data, 3)
	require.Nil(t, r.Data[0].APIKey.ID, "no key sorts first")
	require.Nil(t, r.Data[0].APIKey.Name)
	require.EqualValues(t, 4, r.Data[0].Requests)
	require.Equal(t, key.ID, *r.Data[1].APIKey.ID)
	require.Equal(t, "ci key", *r.Data[1].APIKey.Name)
	require.Equal(t, key.Prefix, *r.Data[1].APIKey.Prefix)
	require.EqualValues(t, 10, r.Data[1].Requests)
	require.Nil(t, r.Data[1].Deployment)

	// By prompt version: a prompt no longer there keeps its usage, without
	// a name.
	r = decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, with("group_by", "prompt_version", "interval", "day")), nil), http.StatusOK)
	require.Len(t, r.Data, 2)
	require.Nil(t, r.Data[0].Prompt.ID)
	require.EqualValues(t, 14, r.Data[0].Requests)
	require.Equal(t, promptID, *r.Data[1].Prompt.ID)
	require.EqualValues(t, 2, *r.Data[1].Prompt.Version)
	require.Nil(t, r.Data[1].Prompt.Name)
	require.EqualValues(t, 3, r.Data[1].Requests)

	// Not grouped: a row per interval.
	r = decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, with("interval", "day")), nil), http.StatusOK)
	require.Nil(t, r.GroupBy)
	require.Len(t, r.Data, 2)
	require.EqualValues(t, 14, r.Data[0].Requests)
	require.Nil(t, r.Data[0].Deployment)
	require.EqualValues(t, 3, r.Data[1].Requests)

	// A range inside an hour covers that whole hour.
	r = decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, url.Values{
		"from": {at(22, 15).Format(time.RFC3339)}, "to": {at(22, 20).Format(time.RFC3339)}}), nil), http.StatusOK)
	require.Equal(t, at(22, 0), r.From)
	require.Equal(t, at(23, 0), r.To)
	require.Len(t, r.Data, 1)
	require.EqualValues(t, 10, r.Totals.Requests)

	// A deleted deployment keeps its usage, without a name.
	require.Equal(t, http.StatusNoContent, b.do(t, "DELETE", deploymentsPath(p.ID)+"/"+embed.ID.String(), nil).status)
	r = decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, with("group_by", "deployment", "interval", "day")), nil), http.StatusOK)
	require.Len(t, r.Data, 3)
	require.Equal(t, embed.ID, *r.Data[0].Deployment.ID, "without a name, first")
	require.Nil(t, r.Data[0].Deployment.Name)
	require.EqualValues(t, 4, r.Data[0].Requests)

	// The other project sees only its own.
	r = decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(other.ID, q), nil), http.StatusOK)
	require.EqualValues(t, 1, r.Totals.Requests)
	require.EqualValues(t, 1000, r.Totals.InputTokens)
}

func TestUsageReportDefaultsToTheLastDay(t *testing.T) {
	t.Parallel()
	b, rec := usageSetup(t)
	p := b.createProject(t, "proj")
	rec.Record(usage.Event{ProjectID: p.ID, Latency: time.Millisecond})
	rec.Record(usage.Event{ProjectID: p.ID, At: time.Now().Add(-50 * time.Hour)})

	before := time.Now()
	r := decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, nil), nil), http.StatusOK)
	after := time.Now()
	require.Equal(t, "hour", r.Interval)
	require.Contains(t, []time.Time{before.UTC().Truncate(time.Hour).Add(time.Hour), after.UTC().Truncate(time.Hour).Add(time.Hour)}, r.To)
	require.Equal(t, 25*time.Hour, r.To.Sub(r.From), "24 hours widened to whole hours")
	require.EqualValues(t, 1, r.Totals.Requests)
	require.NotNil(t, r.Totals.LatencyMSAvg)

	// Nothing timed: no latency, rather than a latency of 0.
	rec.Record(usage.Event{ProjectID: p.ID, RateLimited: true, At: time.Now().Add(-40 * time.Hour)})
	r = decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, url.Values{
		"from": {time.Now().Add(-41 * time.Hour).Format(time.RFC3339)}, "to": {time.Now().Add(-39 * time.Hour).Format(time.RFC3339)}}), nil), http.StatusOK)
	require.EqualValues(t, 1, r.Totals.RateLimited)
	require.Nil(t, r.Totals.LatencyMSAvg)
	require.Nil(t, r.Totals.LatencyMSP95)

	// No usage at all: no rows, totals of zero.
	empty := b.createProject(t, "empty")
	r = decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(empty.ID, nil), nil), http.StatusOK)
	require.Empty(t, r.Data)
	require.NotNil(t, r.Data, "an empty list, not null")
	require.Zero(t, r.Totals.Requests)
}

func TestUsageReportBadParams(t *testing.T) {
	t.Parallel()
	b := setup(t, withoutDocuments)
	p := b.createProject(t, "proj")
	for _, c := range []struct {
		name   string
		params url.Values
		field  string
	}{
		{"from not a time", url.Values{"from": {"yesterday"}}, "from"},
		{"from without zone", url.Values{"from": {"2026-01-02T15:04:05"}}, "from"},
		{"to not a time", url.Values{"to": {"1767225600"}}, "to"},
		{"to before from", url.Values{"from": {"2026-01-02T00:00:00Z"}, "to": {"2026-01-01T00:00:00Z"}}, "to"},
		{"to equal to from", url.Values{"from": {"2026-01-02T00:00:00Z"}, "to": {"2026-01-02T00:00:00Z"}}, "to"},
		{"unknown interval", url.Values{"interval": {"week"}}, "interval"},
		{"unknown grouping", url.Values{"group_by": {"model"}}, "group_by"},
		{"two groupings", url.Values{"group_by": {"deployment,key"}}, "group_by"},
		{"too many hours", url.Values{"from": {"2026-01-01T00:00:00Z"}, "to": {"2026-02-01T00:00:01Z"}}, "from"},
		{"too many days", url.Values{"from": {"2025-01-01T00:00:00Z"}, "to": {"2026-01-03T00:00:00Z"}, "interval": {"day"}}, "from"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := errorOf(t, b.do(t, "GET", usagePath(p.ID, c.params), nil), http.StatusBadRequest)
			require.Equal(t, "invalid", e.Error.Code)
			require.Contains(t, e.Error.Fields, c.field, "message: %s", e.Error.Message)
		})
	}
	// The bounds are inclusive.
	decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, url.Values{"from": {"2026-01-01T00:00:00Z"}, "to": {"2026-02-01T00:00:00Z"}}), nil), http.StatusOK)
	decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, url.Values{"from": {"2025-01-01T00:00:00Z"}, "to": {"2026-01-02T00:00:00Z"}, "interval": {"day"}}), nil), http.StatusOK)

	// A project that is not there, or not a UUID, is 404 as anywhere.
	want := errorOf(t, b.do(t, "GET", usagePath(uuid.New(), nil), nil), http.StatusNotFound)
	got := errorOf(t, b.do(t, "GET", "/api/projects/not-a-uuid/usage", nil), http.StatusNotFound)
	require.Equal(t, want.Error, got.Error)
	errorOf(t, b.do(t, "GET", usagePath(p.ID, nil), nil, withoutAuth), http.StatusUnauthorized)
}

func TestUsageReportRowBound(t *testing.T) {
	t.Parallel()
	b := setup(t, withoutDocuments)
	p := b.createProject(t, "proj")
	// 10,001 keys in one hour: one row each by key.
	_, err := b.pool.Exec(context.Background(), `
		INSERT INTO usage_hourly (project_id, api_key_id, hour, requests, latency_buckets)
		SELECT $1, gen_random_uuid(), '2026-01-01T10:00:00Z', 1, array_fill(0::bigint, ARRAY[16])
		FROM generate_series(1, 10001)`, p.ID)
	require.NoError(t, err)
	q := url.Values{"from": {"2026-01-01T00:00:00Z"}, "to": {"2026-01-02T00:00:00Z"}}
	r := decodeAs[app.UsageReport](t, b.do(t, "GET", usagePath(p.ID, q), nil), http.StatusOK)
	require.Len(t, r.Data, 1)
	require.EqualValues(t, 10001, r.Totals.Requests)
	q.Set("group_by", "key")
	e := errorOf(t, b.do(t, "GET", usagePath(p.ID, q), nil), http.StatusBadRequest)
	require.Contains(t, e.Error.Message, "more than 10000 rows")
}
