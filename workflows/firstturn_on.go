//go:build !nofirstturn

package workflows

// firstCallEndsTurn says whether the first model call may end the run
// itself (see firstTurn). The nofirstturn build tag turns it off, so that
// `make bench-responses` can measure what the fast path earns against the
// same code without it.
const firstCallEndsTurn = true
