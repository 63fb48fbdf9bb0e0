package admission_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud/admission"
)

// BenchmarkAdmit measures one decision and its Done, with every policy off
// and with every policy on (limits high enough never to refuse), in
// process and in Redis on loopback.
func BenchmarkAdmit(b *testing.B) {
	high := admission.Rate{RequestsPerMinute: 10_000_000, Burst: 10_000_000, TokensPerMinute: 1_000_000_000}
	on := admission.Request{
		DeploymentID: uuid.New(), Deployment: admission.Limits{Rate: high, MaxConcurrency: 100_000, QueueTimeout: time.Second},
		KeyID: uuid.New(), Key: high,
	}
	off := admission.Request{DeploymentID: on.DeploymentID, KeyID: on.KeyID}
	run := func(b *testing.B, a *admission.Admitter, req admission.Request) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			t, err := a.Admit(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			t.Done(10)
		}
	}
	b.Run("off/in-process", func(b *testing.B) { run(b, newAdmitter(b, false, admission.Config{}), off) })
	b.Run("on/in-process", func(b *testing.B) { run(b, newAdmitter(b, false, admission.Config{}), on) })
	b.Run("off/redis", func(b *testing.B) { run(b, newAdmitter(b, true, admission.Config{}), off) })
	b.Run("on/redis", func(b *testing.B) { run(b, newAdmitter(b, true, admission.Config{}), on) })
	b.Run("on/in-process/parallel", func(b *testing.B) {
		a := newAdmitter(b, false, admission.Config{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				t, err := a.Admit(context.Background(), on)
				if err != nil {
					b.Error(err)
					return
				}
				t.Done(10)
			}
		})
	})
}
