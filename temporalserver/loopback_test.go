package temporalserver_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/temporalserver"
)

// TestListensOnLoopbackOnly starts a server with its UI and checks that
// every TCP socket this process listens on is bound to a loopback address:
// the embedded server has no authentication, so nothing of it may be
// reachable from another host.
func TestListensOnLoopbackOnly(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads listening sockets from /proc")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	uiPort, err := temporalserver.FreePort("127.0.0.1")
	require.NoError(t, err)
	srv, err := temporalserver.Start(ctx, temporalserver.Options{UIPort: uiPort})
	require.NoError(t, err)
	defer srv.Stop()
	// The UI starts after Start returns; wait until it accepts.
	for {
		c, err := net.DialTimeout("tcp", srv.UIAddr(), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("UI never listened: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}

	addrs := listeningAddrs(t)
	require.Contains(t, addrs, srv.HostPort())
	require.Contains(t, addrs, srv.UIAddr())
	require.Greater(t, len(addrs), 2, "history, matching and worker listen too")
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		require.NoError(t, err)
		require.True(t, net.ParseIP(host).IsLoopback(), "listens on %s, which is not loopback (all: %v)", a, addrs)
	}
}

func TestNonLoopbackIPRefused(t *testing.T) {
	for _, ip := range []string{"0.0.0.0", "::", "192.0.2.1"} {
		_, err := temporalserver.Start(context.Background(), temporalserver.Options{IP: ip})
		require.ErrorContains(t, err, "loopback", ip)
	}
}

// listeningAddrs are the local addresses of the TCP sockets this process
// listens on.
func listeningAddrs(t *testing.T) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var addrs []string
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(table)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// local_address st ... inode; st 0A is LISTEN.
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			addrs = append(addrs, procAddr(t, fields[1]))
		}
		require.NoError(t, sc.Err())
		f.Close()
	}
	return addrs
}

// procAddr decodes /proc/net/tcp's "HEXIP:HEXPORT", whose IP is in the
// host's byte order per 32-bit word (little-endian here).
func procAddr(t *testing.T, s string) string {
	t.Helper()
	ipHex, portHex, _ := strings.Cut(s, ":")
	raw, err := hex.DecodeString(ipHex)
	require.NoError(t, err)
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	require.NoError(t, err)
	return net.JoinHostPort(ip.String(), fmt.Sprint(port))
}
