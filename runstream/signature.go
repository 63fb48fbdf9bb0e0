package runstream

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"

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

// signature is the signature of data published on subject under key.
func signature(key, subject string, data []byte) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(subject))
	mac.Write([]byte{0})
	mac.Write(data)
	return hex.EncodeToString(mac.Sum(nil))
}

// signedMsg is the message that publishes data on subject, signed with key;
// an empty key (a run whose caller gave none) leaves it unsigned.
func signedMsg(key, subject string, data []byte) *nats.Msg {
	m := &nats.Msg{Subject: subject, Data: data}
	if key != "" {
		m.Header = nats.Header{SignatureHeader: []string{signature(key, subject, data)}}
	}
	return m
}

// verified reports whether m carries exactly one signature and it is key's
// for m's subject and payload.
func verified(key string, m *nats.Msg) bool {
	if key == "" || m.Header == nil {
		return false
	}
	got := m.Header.Values(SignatureHeader)
	if len(got) != 1 {
		return false
	}
	return hmac.Equal([]byte(got[0]), []byte(signature(key, m.Subject, m.Data)))
}
