package scaling

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tree writes files under a temporary root, by path.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		writeFile(t, root, p, content)
	}
	return root
}

func writeFile(t *testing.T, root, p, content string) {
	t.Helper()
	full := filepath.Join(root, p)
	require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
	require.NoError(t, os.WriteFile(full, []byte(content), 0o644))
}

// clock is a test's time, moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestSysInfoCgroupLimits reads a container with two CPUs and 1000 bytes:
// one CPU-second used in one second is half its CPU; 600 bytes of which
// 100 are reclaimable page cache is half its memory.
func TestSysInfoCgroupLimits(t *testing.T) {
	t.Parallel()
	root := tree(t, map[string]string{
		"proc/self/cgroup":                     "0::/pod/bud\n",
		"sys/fs/cgroup/pod/bud/cpu.max":        "200000 100000\n",
		"sys/fs/cgroup/pod/bud/cpu.stat":       "usage_usec 5000000\nuser_usec 4000000\n",
		"sys/fs/cgroup/pod/bud/memory.max":     "1000\n",
		"sys/fs/cgroup/pod/bud/memory.current": "600\n",
		"sys/fs/cgroup/pod/bud/memory.stat":    "anon 400\ninactive_file 100\n",
		"proc/stat":                            "cpu 1 0 1 100 0 0 0 0 0 0\n",
		"proc/meminfo":                         "MemTotal: 100 kB\nMemAvailable: 90 kB\n",
	})
	c := &clock{t: time.Unix(1000, 0)}
	s, err := newSysInfo(root, c.now)
	require.NoError(t, err)

	mem, err := s.MemoryUsage(nil)
	require.NoError(t, err)
	require.InDelta(t, 0.5, mem, 1e-9)

	writeFile(t, root, "sys/fs/cgroup/pod/bud/cpu.stat", "usage_usec 6000000\n")
	c.t = c.t.Add(50 * time.Millisecond)
	cpu, err := s.CpuUsage(nil)
	require.NoError(t, err)
	require.Zero(t, cpu, "too soon to measure: the last measurement stands")
	c.t = c.t.Add(950 * time.Millisecond)
	cpu, err = s.CpuUsage(nil)
	require.NoError(t, err)
	require.InDelta(t, 0.5, cpu, 1e-9)
}

// TestSysInfoMachine reads a process whose cgroup has no limits: the
// machine's busy jiffies and used memory count.
func TestSysInfoMachine(t *testing.T) {
	t.Parallel()
	root := tree(t, map[string]string{
		"proc/self/cgroup":                    "0::/user.slice\n",
		"sys/fs/cgroup/user.slice/cpu.max":    "max 100000\n",
		"sys/fs/cgroup/user.slice/cpu.stat":   "usage_usec 1\n",
		"sys/fs/cgroup/user.slice/memory.max": "max\n",
		"proc/stat":                           "cpu 100 0 100 800 0 0 0 0 0 0\ncpu0 1 1 1 1\n",
		"proc/meminfo":                        "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n",
	})
	c := &clock{t: time.Unix(1000, 0)}
	s, err := newSysInfo(root, c.now)
	require.NoError(t, err)

	mem, err := s.MemoryUsage(nil)
	require.NoError(t, err)
	require.InDelta(t, 0.75, mem, 1e-9)

	// 300 busy of 400 jiffies since.
	writeFile(t, root, "proc/stat", "cpu 250 0 250 900 0 0 0 0 0 0\n")
	c.t = c.t.Add(time.Second)
	cpu, err := s.CpuUsage(nil)
	require.NoError(t, err)
	require.InDelta(t, 0.75, cpu, 1e-9)
}

func TestSysInfoNeedsProc(t *testing.T) {
	t.Parallel()
	_, err := newSysInfo(t.TempDir(), time.Now)
	require.ErrorContains(t, err, "/proc")
}
