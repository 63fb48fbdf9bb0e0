package metrics

import (
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// TemporalBuckets are the bounds, in seconds, of the histograms a
// Temporal SDK timer becomes: from a millisecond poll to a minute-long
// model call.
var TemporalBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// NewTemporal returns a Temporal SDK metrics handler, for
// client.Options.MetricsHandler, whose metrics reg serves under the SDK's
// own names (temporal_worker_task_slots_used, temporal_num_pollers,
// temporal_activity_schedule_to_start_latency, …): counters and gauges as
// they are, timers as histograms in seconds (TemporalBuckets), the SDK's
// tags as labels. Those names are what Temporal's documentation and
// dashboards read.
//
// The SDK tags one metric with different tag sets (a request's
// status_code only on failures): a family's series are written with the
// union of its label names, a label a series lacks left empty, which
// Prometheus reads as absent.
func NewTemporal(reg prometheus.Registerer) client.MetricsHandler {
	s := &temporalSet{families: map[string]*temporalFamily{}}
	reg.MustRegister(s)
	return &temporalHandler{set: s, tags: map[string]string{}}
}

// temporalHandler is the handler of one tag set.
type temporalHandler struct {
	set  *temporalSet
	tags map[string]string
	key  string // tags, sorted and joined: a series' identity within a family
}

func (h *temporalHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	for k, v := range tags {
		merged[labelName(k)] = v
	}
	keys := slices.Sorted(maps.Keys(merged))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(merged[k])
		b.WriteByte(0)
	}
	return &temporalHandler{set: h.set, tags: merged, key: b.String()}
}

func (h *temporalHandler) Counter(name string) client.MetricsCounter {
	s := h.set.series(name, kindCounter, h)
	return counterFunc(func(d int64) { s.add(float64(d)) })
}

func (h *temporalHandler) Gauge(name string) client.MetricsGauge {
	s := h.set.series(name, kindGauge, h)
	return gaugeFunc(s.set)
}

func (h *temporalHandler) Timer(name string) client.MetricsTimer {
	s := h.set.series(name, kindTimer, h)
	return timerFunc(func(d time.Duration) { s.observe(d.Seconds()) })
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

type metricKind int

const (
	kindCounter metricKind = iota
	kindGauge
	kindTimer
)

// temporalSet holds every series the SDK has reported, and collects them
// for Prometheus. It describes nothing up front (an unchecked collector):
// the SDK names its metrics as it goes.
type temporalSet struct {
	mu       sync.Mutex
	families map[string]*temporalFamily
}

type temporalFamily struct {
	kind   metricKind
	series map[string]*temporalSeries
}

// temporalSeries is one metric with one tag set. A counter or gauge keeps
// its value in bits (float64), a timer its histogram under mu.
type temporalSeries struct {
	tags  map[string]string
	value atomic.Uint64

	mu      sync.Mutex
	count   uint64
	sum     float64
	buckets []uint64 // observations <= TemporalBuckets[i]
}

// series returns the series of name with h's tags, made on first use. A
// name the SDK reports as two kinds keeps the first.
func (s *temporalSet) series(name string, kind metricKind, h *temporalHandler) *temporalSeries {
	name = metricName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.families[name]
	if f == nil {
		f = &temporalFamily{kind: kind, series: map[string]*temporalSeries{}}
		s.families[name] = f
	}
	se := f.series[h.key]
	if se == nil {
		se = &temporalSeries{tags: h.tags}
		if f.kind == kindTimer {
			se.buckets = make([]uint64, len(TemporalBuckets))
		}
		f.series[h.key] = se
	}
	return se
}

func (se *temporalSeries) add(d float64) {
	for {
		old := se.value.Load()
		if se.value.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

func (se *temporalSeries) set(v float64) { se.value.Store(math.Float64bits(v)) }

func (se *temporalSeries) observe(v float64) {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.buckets == nil { // the name was first reported as a counter or gauge
		return
	}
	se.count++
	se.sum += v
	for i, ub := range TemporalBuckets {
		if v <= ub {
			se.buckets[i]++
		}
	}
}

// Describe describes nothing: the set is an unchecked collector.
func (s *temporalSet) Describe(chan<- *prometheus.Desc) {}

// Collect writes every series, each family's with the union of its
// families' label names.
func (s *temporalSet) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	type snapshot struct {
		name   string
		kind   metricKind
		series []*temporalSeries
	}
	snaps := make([]snapshot, 0, len(s.families))
	for name, f := range s.families {
		snaps = append(snaps, snapshot{name, f.kind, slices.Collect(maps.Values(f.series))})
	}
	s.mu.Unlock()
	for _, sn := range snaps {
		labels := map[string]bool{}
		for _, se := range sn.series {
			for k := range se.tags {
				labels[k] = true
			}
		}
		names := slices.Sorted(maps.Keys(labels))
		desc := prometheus.NewDesc(sn.name, "Reported by the Temporal SDK; see Temporal's SDK metrics reference.", names, nil)
		for _, se := range sn.series {
			values := make([]string, len(names))
			for i, k := range names {
				values[i] = se.tags[k]
			}
			switch sn.kind {
			case kindCounter:
				ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, math.Float64frombits(se.value.Load()), values...)
			case kindGauge:
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, math.Float64frombits(se.value.Load()), values...)
			case kindTimer:
				se.mu.Lock()
				buckets := make(map[float64]uint64, len(TemporalBuckets))
				for i, ub := range TemporalBuckets {
					buckets[ub] = se.buckets[i]
				}
				count, sum := se.count, se.sum
				se.mu.Unlock()
				ch <- prometheus.MustNewConstHistogram(desc, count, sum, buckets, values...)
			}
		}
	}
}

// metricName is name with every character Prometheus refuses in a
// metric name made an underscore.
func metricName(name string) string {
	return sanitize(name, true)
}

// labelName is a tag's name as a Prometheus label name.
func labelName(name string) string {
	return sanitize(name, false)
}

func sanitize(name string, colon bool) string {
	if name == "" {
		return "_"
	}
	b := []byte(name)
	for i, c := range b {
		ok := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' || colon && c == ':'
		if !ok {
			b[i] = '_'
		}
	}
	return string(b)
}
