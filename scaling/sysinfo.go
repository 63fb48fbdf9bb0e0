package scaling

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/worker"
)

// cpuSampleEvery is the shortest time over which CPU use is measured: the
// SDK asks at every slot it considers, far more often.
const cpuSampleEvery = 100 * time.Millisecond

// SysInfo reports the worker's CPU and memory use, as shares between 0 and
// 1, for the SDK's resource-based slot suppliers (worker.SysInfoProvider).
// Inside a container with limits (a cgroup v2 with cpu.max or memory.max
// set) they are shares of those limits, which are what the kernel
// throttles or kills at; without limits, shares of the machine. Linux
// only: it reads /proc and /sys/fs/cgroup.
type SysInfo struct {
	root string // the file system's root: "/", or a test's tree
	now  func() time.Time

	cgroup string // the process's cgroup directory, "" without cgroup v2
	cpus   float64

	mu       sync.Mutex
	lastAt   time.Time
	lastBusy float64 // seconds of CPU used (cgroup) or busy jiffies (machine)
	lastAll  float64 // machine only: all jiffies
	cpu      float64
}

var _ worker.SysInfoProvider = (*SysInfo)(nil)

// NewSysInfo reads the worker's CPU and memory use from this machine; it
// fails where there is no /proc to read (not Linux).
func NewSysInfo() (*SysInfo, error) { return newSysInfo("/", time.Now) }

func newSysInfo(root string, now func() time.Time) (*SysInfo, error) {
	s := &SysInfo{root: root, now: now, cpus: float64(runtime.NumCPU())}
	if self, err := os.ReadFile(s.path("proc/self/cgroup")); err == nil {
		// cgroup v2 has one line, "0::/path".
		for line := range strings.Lines(string(self)) {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
				dir := s.path("sys/fs/cgroup", rest)
				if _, err := os.Stat(filepath.Join(dir, "cpu.stat")); err == nil {
					s.cgroup = dir
				}
			}
		}
	}
	if quota, ok := s.cpuQuota(); ok {
		s.cpus = min(s.cpus, quota)
	}
	busy, all, err := s.cpuTime()
	if err != nil {
		return nil, fmt.Errorf("scaling: CPU use: %w (autoscaling reads Linux's /proc and cgroup files)", err)
	}
	if _, err := s.MemoryUsage(nil); err != nil {
		return nil, err
	}
	s.lastAt, s.lastBusy, s.lastAll = s.now(), busy, all
	return s, nil
}

func (s *SysInfo) path(parts ...string) string {
	return filepath.Join(append([]string{s.root}, parts...)...)
}

// cpuQuota is the CPUs the cgroup may use, when cpu.max limits it.
func (s *SysInfo) cpuQuota() (float64, bool) {
	if s.cgroup == "" {
		return 0, false
	}
	b, err := os.ReadFile(filepath.Join(s.cgroup, "cpu.max"))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0, false
	}
	quota, err1 := strconv.ParseFloat(f[0], 64)
	period, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || quota <= 0 || period <= 0 {
		return 0, false
	}
	return quota / period, true
}

// cpuTime is the CPU used so far: the cgroup's seconds when it has a
// quota (all is then 0), else the machine's busy and total jiffies.
func (s *SysInfo) cpuTime() (busy, all float64, err error) {
	if _, limited := s.cpuQuota(); limited {
		b, err := os.ReadFile(filepath.Join(s.cgroup, "cpu.stat"))
		if err != nil {
			return 0, 0, err
		}
		v, ok := field(b, "usage_usec")
		if !ok {
			return 0, 0, errors.New("cpu.stat has no usage_usec")
		}
		return v / 1e6, 0, nil
	}
	b, err := os.ReadFile(s.path("proc/stat"))
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat has no cpu line")
	}
	for i, x := range f[1:] {
		v, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		all += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, all, nil
}

// CpuUsage is the share of the CPUs used since the last measurement,
// measured at most every cpuSampleEvery (in between, the last one).
func (s *SysInfo) CpuUsage(*worker.SysInfoContext) (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	elapsed := now.Sub(s.lastAt)
	if elapsed < cpuSampleEvery {
		return s.cpu, nil
	}
	busy, all, err := s.cpuTime()
	if err != nil {
		return 0, fmt.Errorf("scaling: CPU use: %w", err)
	}
	switch {
	case all > 0 && all > s.lastAll:
		s.cpu = (busy - s.lastBusy) / (all - s.lastAll)
	case all == 0 && s.cpus > 0:
		s.cpu = (busy - s.lastBusy) / elapsed.Seconds() / s.cpus
	}
	s.cpu = min(max(s.cpu, 0), 1)
	s.lastAt, s.lastBusy, s.lastAll = now, busy, all
	return s.cpu, nil
}

// MemoryUsage is the share of memory in use: the cgroup's working set
// (memory.current less the page cache the kernel reclaims first) of its
// memory.max when it has one, else the machine's used memory
// (MemTotal - MemAvailable) of all of it.
func (s *SysInfo) MemoryUsage(*worker.SysInfoContext) (float64, error) {
	if s.cgroup != "" {
		if limit, err := os.ReadFile(filepath.Join(s.cgroup, "memory.max")); err == nil && strings.TrimSpace(string(limit)) != "max" {
			limitBytes, err1 := strconv.ParseFloat(strings.TrimSpace(string(limit)), 64)
			cur, err2 := os.ReadFile(filepath.Join(s.cgroup, "memory.current"))
			current, err3 := strconv.ParseFloat(strings.TrimSpace(string(cur)), 64)
			if err := errors.Join(err1, err2, err3); err != nil || limitBytes <= 0 {
				return 0, fmt.Errorf("scaling: memory use of cgroup %s: %w", s.cgroup, err)
			}
			if stat, err := os.ReadFile(filepath.Join(s.cgroup, "memory.stat")); err == nil {
				if inactive, ok := field(stat, "inactive_file"); ok && inactive < current {
					current -= inactive
				}
			}
			return min(current/limitBytes, 1), nil
		}
	}
	b, err := os.ReadFile(s.path("proc/meminfo"))
	if err != nil {
		return 0, fmt.Errorf("scaling: memory use: %w (autoscaling reads Linux's /proc and cgroup files)", err)
	}
	total, ok1 := field(b, "MemTotal:")
	avail, ok2 := field(b, "MemAvailable:")
	if !ok1 || !ok2 || total <= 0 {
		return 0, errors.New("scaling: memory use: /proc/meminfo lacks MemTotal or MemAvailable")
	}
	return min(max((total-avail)/total, 0), 1), nil
}

// field is the number after name at the start of a line of b.
func field(b []byte, name string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}
