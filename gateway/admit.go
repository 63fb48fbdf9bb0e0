package gateway

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/budhq/bud/admission"
	"github.com/budhq/bud/deployment"
)

// codeRateLimited answers a request a limit refuses, as OpenAI does.
const codeRateLimited = "rate_limit_exceeded"

// admit decides whether the caller's request to d may proceed, by d's
// settings and the caller's key's own rate limit: the one decision every
// route that reaches a deployment takes (package admission). It sets the
// x-ratelimit-* headers in h, and on a refusal Retry-After too, and
// returns the request's ticket, whose Done the route calls once the reply
// is complete with the tokens it used; or the 429 that answers a refusal.
// When r's context ends while the request waits for a slot, it returns
// errClientGone, which the route does not answer. d may be nil (a run
// whose deployment is gone): the key's limit applies alone. A refusal is
// noted in u, so that usage counts it as rate limited.
//
// A request the response cache answers (cached) counts against the rate
// limits as any request, but takes no concurrency slot: it holds no
// upstream connection or run, so it is never queued behind those that do.
func (g *Gateway) admit(r *http.Request, h http.Header, c caller, d *deployment.Deployment, cached bool, u *served) (*admission.Ticket, *apiError) {
	req := admission.Request{KeyID: c.keyID, Key: c.rate}
	name := ""
	if d != nil {
		req.DeploymentID, req.Deployment, name = d.ID, admission.DeploymentLimits(d.Settings), d.Name
		if cached {
			req.Deployment.MaxConcurrency = 0
		}
	}
	t, err := g.admitter.Admit(r.Context(), req)
	if err == nil {
		t.Headers(h)
		return t, nil
	}
	refused, ok := errors.AsType[*admission.Refused](err)
	if !ok {
		return nil, errClientGone
	}
	u.rateLimited = true
	refused.Headers(h)
	h.Set("Retry-After", strconv.Itoa(refused.RetryAfterSeconds()))
	return nil, errRateLimited(refused, name)
}

// errClientGone stands for a request whose client went away before it
// was admitted: there is no one to answer.
var errClientGone = &apiError{Status: 499, Type: typeInvalidRequest, Message: "The client closed the request."}

// errRateLimited is the 429 of a refused request, in OpenAI's words: its
// type names the kind of limit (requests or tokens), and the message
// whose limit it is and when to try again.
func errRateLimited(r *admission.Refused, deploymentName string) *apiError {
	whose := "this API key"
	if r.Scope == admission.ScopeDeployment {
		whose = "model '" + echoed(deploymentName) + "'"
	}
	retry := r.RetryAfter.Round(time.Millisecond).String()
	e := &apiError{Status: http.StatusTooManyRequests, Type: "requests", Code: codeRateLimited}
	allowed := strconv.FormatInt(r.Allowed, 10)
	switch r.Limit {
	case admission.LimitTokens:
		e.Type = "tokens"
		e.Message = "Rate limit reached for " + whose + " on tokens per minute (TPM): Limit " + allowed + ". Please try again in " + retry + "."
	case admission.LimitConcurrency:
		e.Message = "Too many requests in flight for " + whose + ": at most " + allowed + " at once. Please try again shortly."
	default:
		e.Message = "Rate limit reached for " + whose + " on requests per minute (RPM): Limit " + allowed + ". Please try again in " + retry + "."
	}
	return e
}
