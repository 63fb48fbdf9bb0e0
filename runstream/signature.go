package runstream

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"

	"github.com/nats-io/nats.go"
)

// SignatureHeader is the NATS header that carries an event's signature:
// the hex HMAC-SHA256, under the run's event key, of the subject, a zero
// byte and the payload. The subject is signed too, so an event cannot be
// moved to another subject.
const SignatureHeader = "Bud-Signature"

// eventKeyBytes is the size of an event key before encoding: the size of
// SHA-256's block would be no stronger, its output size is enough.
const eventKeyBytes = 32

// NewEventKey returns a fresh random event key: the gateway makes one for
// each turn it waits on and hands it to the run in the workflow's input
// (run.Input.EventKey, run.ContinueInput.EventKey): it never goes on
// NATS. The run signs every event of the turn with it, and the
// gateway's subscription drops any event that is not signed with it. Anyone
// else who can publish on the run's subject can therefore not make the
// gateway take their event for the run's.
func NewEventKey() string {
	b := make([]byte, eventKeyBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// macOf is the HMAC of subject's events under key, or nil when key is
// empty: the events then go unsigned.
func macOf(key, subject string) *eventMAC {
	if key == "" {
		return nil
	}
	return newEventMAC(key, subject)
}

// signedMsg is the message that publishes data on subject, signed with
// mac, or unsigned when mac is nil (a run whose caller gave no key).
func signedMsg(mac *eventMAC, subject string, data []byte) *nats.Msg {
	m := &nats.Msg{Subject: subject, Data: data}
	if mac != nil {
		m.Header = nats.Header{SignatureHeader: []string{hex.EncodeToString(mac.sum(data))}}
	}
	return m
}

// eventMAC is the HMAC-SHA256 of the events on one subject under one
// key, its state reused from event to event: a publisher signs each delta
// with one, and a subscription checks every event it relays with one. It
// is not safe for concurrent use; a Publisher is not either, and a
// subscription's handler sees one message at a time.
type eventMAC struct {
	// signed is what a signature covers before the payload: the subject
	// and a zero byte.
	signed []byte
	mac    hash.Hash
	buf    []byte
}

// newEventMAC returns the HMAC of subject's events under key.
func newEventMAC(key, subject string) *eventMAC {
	return &eventMAC{signed: append([]byte(subject), 0), mac: hmac.New(sha256.New, []byte(key)), buf: make([]byte, 0, sha256.Size)}
}

// sum is the HMAC of data published on the subject, valid until the next
// call.
func (e *eventMAC) sum(data []byte) []byte {
	e.mac.Reset()
	e.mac.Write(e.signed)
	e.mac.Write(data)
	e.buf = e.mac.Sum(e.buf[:0])
	return e.buf
}

// verified reports whether m is on the subject and carries exactly one
// signature, and it is the key's for m's payload. The key must not be
// empty: anyone can sign with an empty key.
func (e *eventMAC) verified(m *nats.Msg) bool {
	if m.Header == nil || m.Subject != string(e.signed[:len(e.signed)-1]) {
		return false
	}
	got := m.Header.Values(SignatureHeader)
	if len(got) != 1 || len(got[0]) != hex.EncodedLen(sha256.Size) {
		return false
	}
	sig, err := hex.DecodeString(got[0])
	if err != nil {
		return false
	}
	return hmac.Equal(sig, e.sum(m.Data))
}
