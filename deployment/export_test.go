package deployment

import "time"

// SetNow replaces the cache's clock, so a test can pass the TTL without
// waiting for it.
func (c *Cache) SetNow(now func() time.Time) { c.now = now }
