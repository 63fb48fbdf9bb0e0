package runstream

import (
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// BenchmarkVerify measures the check a subscription makes of each event
// it relays (a delta of a few words, signed): with its eventMAC, whose
// HMAC state it reuses, and, as the baseline, with a fresh HMAC and hex
// signature per event.
func BenchmarkVerify(b *testing.B) {
	key, subject := NewEventKey(), Subject("resp_0123456789abcdef")
	data, err := json.Marshal(Event{Type: TypeDelta, Call: 1, Attempt: 1, Seq: 7, Text: "a few words "})
	if err != nil {
		b.Fatal(err)
	}
	m := signedMsg(newEventMAC(key, subject), subject, data)
	b.Run("eventMAC", func(b *testing.B) {
		e := newEventMAC(key, subject)
		b.ReportAllocs()
		for b.Loop() {
			if !e.verified(m) {
				b.Fatal("not verified")
			}
		}
	})
	b.Run("fresh HMAC", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			want := hex.EncodeToString(newEventMAC(key, m.Subject).sum(m.Data))
			if !hmac.Equal([]byte(m.Header.Get(SignatureHeader)), []byte(want)) {
				b.Fatal("not verified")
			}
		}
	})
}
