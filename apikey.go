package bud

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// APIKeyPrefix starts every project API key secret.
const APIKeyPrefix = "bud-"

// displayLen is how much of a secret, after its prefix, a person sees in lists.
const displayLen = 8

// NewAPIKeySecret returns a fresh secret (`bud-` and 43 URL-safe characters,
// 256 bits of entropy), its display prefix and the hash that is stored.
func NewAPIKeySecret() (secret, display string, hash []byte) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand never fails on supported platforms.
		panic("bud: crypto/rand: " + err.Error())
	}
	secret = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, secret[:len(APIKeyPrefix)+displayLen], HashAPIKey(secret)
}

// HashAPIKey returns the stored form of a secret. A plain SHA-256 suffices:
// the secret is 256 random bits, so there is nothing to brute-force, and the
// gateway can look a key up by hash in one indexed read.
func HashAPIKey(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// LooksLikeAPIKey reports whether s has the shape of a secret we issue.
func LooksLikeAPIKey(s string) bool {
	return strings.HasPrefix(s, APIKeyPrefix) && len(s) == len(APIKeyPrefix)+43
}
