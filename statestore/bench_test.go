package statestore_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/budhq/bud/statestore"
	"github.com/budhq/bud/statestore/statestoretest"
)

// Latency of one call through daprd to Postgres on loopback, with a
// prompt-sized document.
func BenchmarkGet(b *testing.B) {
	bd := setup(b)
	key := statestoretest.NewKey()
	if err := bd.store.Put(bd.ctx, key, []byte(statestoretest.Document)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := bd.store.Get(bd.ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPut(b *testing.B) {
	bd := setup(b)
	id := uuid.New()
	v := 0
	for b.Loop() {
		v++
		if err := bd.store.Put(bd.ctx, statestore.DocumentKey(id, v), []byte(statestoretest.Document)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetParallel(b *testing.B) {
	bd := setup(b)
	key := statestoretest.NewKey()
	if err := bd.store.Put(bd.ctx, key, []byte(statestoretest.Document)); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bd.store.Get(bd.ctx, key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
