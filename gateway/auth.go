package gateway

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/budhq/bud"
	"github.com/budhq/bud/admission"
)

// caller is an authenticated request's project and key.
type caller struct {
	keyID     uuid.UUID
	projectID uuid.UUID
	// rate is the key's own rate limit (zero: none), which admission
	// applies on top of each deployment's.
	rate admission.Rate
	// arrived is when the gateway began on the request, so that a
	// handler's latency includes the key's lookup.
	arrived time.Time
}

type callerKey struct{}

// callerFrom is the caller that authenticated put in ctx.
func callerFrom(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// authenticated lets a request through only with a valid project API key,
// with its caller in the context (callerFrom), and answers any other 401.
// For an endpoint the model request metrics cover (endpoint not ""), a
// refused request is counted there as the endpoint counts its other
// failures.
func (g *Gateway) authenticated(endpoint string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			c, aerr := g.authenticate(r)
			if aerr != nil {
				writeAPIError(w, aerr)
				if endpoint != "" {
					g.metrics.refused(endpoint, aerr.Status, start)
				}
				return
			}
			c.arrived = start
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
		})
	}
}

// authenticate resolves the request's key. OpenAI clients send
// `Authorization: Bearer`; Azure clients send `api-key`.
func (g *Gateway) authenticate(r *http.Request) (caller, *apiError) {
	secret := ""
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			secret = strings.TrimSpace(h[7:])
		}
	} else {
		secret = strings.TrimSpace(r.Header.Get("api-key"))
	}
	if secret == "" {
		return caller{}, errNoKey()
	}
	// What cannot be a key we issued is refused before it costs a hash, a
	// read or a cache entry.
	if !bud.LooksLikeAPIKey(secret) {
		return caller{}, errBadKey()
	}
	e, err := g.keys.key(r.Context(), hashSecret(secret))
	if err != nil {
		g.log.Error("authenticate", "err", err)
		return caller{}, errInternal()
	}
	switch {
	case !e.found:
		return caller{}, errBadKey()
	case e.revoked:
		return caller{}, errRevokedKey()
	case e.expiresAt != nil && !time.Now().Before(*e.expiresAt):
		return caller{}, errExpiredKey()
	}
	g.lastUsed.mark(e.id)
	return caller{keyID: e.id, projectID: e.projectID, rate: e.rate}, nil
}

// hashSecret is the SHA-256 of secret, by which keys are stored and cached.
// The secret is copied into a buffer on the stack: a plain conversion to a
// slice puts a secret longer than 32 bytes (every key is 47) on the heap.
func hashSecret(secret string) [32]byte {
	var buf [64]byte
	return sha256.Sum256(append(buf[:0], secret...))
}
