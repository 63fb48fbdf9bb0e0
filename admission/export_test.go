package admission

import "github.com/google/uuid"

// Waiting is how many requests wait in this process for a slot of the
// deployment (in-process state only).
func (a *Admitter) Waiting(deployment uuid.UUID) int {
	s := a.local.get(kindDeployment, deployment)
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiters)
}

// Sweep drops the idle in-process state now, as a new subject does once a
// minute per shard, and reports how many subjects are left.
func (a *Admitter) Sweep() int {
	n := 0
	for i := range a.local.shards {
		sh := &a.local.shards[i]
		sh.mu.Lock()
		a.local.sweep(sh)
		n += len(sh.subjects)
		sh.mu.Unlock()
	}
	return n
}
