package usage_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/budhq/bud/db/dbtest"
	"github.com/budhq/bud/usage"
)

// BenchmarkRecord measures Record, the gateway's per-request cost, with
// Prometheus series on: from one goroutine, and from every core at once
// over 1,000 keys and 10 deployments, as a busy gateway calls it.
func BenchmarkRecord(b *testing.B) {
	pool, _ := dbtest.NewSchema(b)
	rec, err := usage.New(usage.Config{Pool: pool, Registry: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	project := uuid.New()
	deployments := make([]uuid.UUID, 10)
	for i := range deployments {
		deployments[i] = uuid.New()
	}
	events := make([]usage.Event, 1000)
	now := time.Now()
	for i := range events {
		events[i] = usage.Event{
			ProjectID: project, DeploymentID: deployments[i%10], Deployment: "dep", APIKeyID: uuid.New(),
			InputTokens: 120, OutputTokens: 40, Latency: time.Duration(i) * time.Millisecond, At: now,
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			rec.Record(events[i%len(events)])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(uuid.New()[0])
			for pb.Next() {
				rec.Record(events[i%len(events)])
				i++
			}
		})
	})
}
