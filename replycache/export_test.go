package replycache

import "time"

// SetMemoryClock makes m read the time from now.
func SetMemoryClock(m *Memory, now func() time.Time) { m.now = now }

// SetCacheClock makes c read the time from now.
func SetCacheClock(c *Cache, now func() time.Time) { c.now = now }
