package workflows

import "time"

// PauseTimeout is how long a paused run waits for function outputs or
// approvals before it ends as it stands.
const PauseTimeout = 7 * 24 * time.Hour
