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
