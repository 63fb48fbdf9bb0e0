package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/budhq/bud/egress"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		deny    string
		addr    string
		refused string // the rule that refuses, "" when allowed
	}{
		{"", "169.254.169.254", "link-local"},
		{"", "169.254.0.1", "link-local"},
		{"", "::ffff:169.254.169.254", "link-local"},
		{"", "fe80::1", "link-local"},
		{"", "fe80::1%eth0", "link-local"},
		{"", "fd00:ec2::254", "cloud metadata"},
		{"", "64:ff9b::a9fe:a9fe", "link-local via NAT64"},
		{"", "127.0.0.1", ""},
		{"", "::1", ""},
		{"", "0.0.0.0", ""},
		{"", "10.1.2.3", ""},
		{"", "192.168.1.1", ""},
		{"", "fd00:ec2::253", ""},
		{"", "8.8.8.8", ""},
		{"", "2001:4860:4860::8888", ""},
		{"loopback", "127.0.0.1", "loopback"},
		{"loopback", "127.9.9.9", "loopback"},
		{"loopback", "::1", "loopback"},
		{"loopback", "::ffff:127.0.0.1", "loopback"},
		{"loopback", "0.0.0.0", "loopback"},
		{"loopback", "::", "loopback"},
		{"loopback", "10.0.0.1", ""},
		{"LOOPBACK", "127.0.0.1", "loopback"},
		{"private", "10.0.0.1", "private"},
		{"private", "172.16.5.4", "private"},
		{"private", "172.32.0.1", ""},
		{"private", "192.168.0.1", "private"},
		{"private", "fd12::1", "private"},
		{"private", "127.0.0.1", ""},
		{"private", "64:ff9b::a00:1", "private via NAT64"},
		{" loopback , private ", "10.0.0.1", "private"},
		{"loopback,private", "::1", "loopback"},
		{"100.64.0.0/10", "100.100.100.100", "100.64.0.0/10"},
		{"100.64.0.0/10", "100.128.0.1", ""},
		{"100.64.0.1/10", "100.64.0.2", "100.64.0.0/10"},
		{"203.0.113.7", "203.0.113.7", "203.0.113.7/32"},
		{"203.0.113.7", "203.0.113.8", ""},
		{"::ffff:10.0.0.0/104", "10.9.9.9", "10.0.0.0/8"},
		{"2001:db8::/32", "2001:db8::1", "2001:db8::/32"},
		{"2001:db8::/32", "2001:db9::1", ""},
		{"10.0.0.0/8,", "10.0.0.1", "10.0.0.0/8"},
	}
	for _, c := range cases {
		p, err := egress.Parse(c.deny)
		require.NoError(t, err, c.deny)
		err = p.Check(netip.MustParseAddr(c.addr))
		if c.refused == "" {
			require.NoError(t, err, "deny %q, addr %s", c.deny, c.addr)
			continue
		}
		var re *egress.RefusedError
		require.ErrorAs(t, err, &re, "deny %q, addr %s", c.deny, c.addr)
		require.Equal(t, c.refused, re.Rule, "deny %q, addr %s", c.deny, c.addr)
		require.Contains(t, err.Error(), "egress policy refuses")
	}
}

func TestZeroAndNilPolicyRefuseTheDefaults(t *testing.T) {
	t.Parallel()
	var nilPolicy *egress.Policy
	for _, p := range []*egress.Policy{nilPolicy, {}} {
		require.True(t, egress.IsRefused(p.Check(netip.MustParseAddr("169.254.169.254"))))
		require.True(t, egress.IsRefused(p.Check(netip.MustParseAddr("fe80::1"))))
		require.NoError(t, p.Check(netip.MustParseAddr("127.0.0.1")))
		require.NoError(t, p.Check(netip.MustParseAddr("10.0.0.1")))
	}
}

func TestParseRefusesWhatItCannotRead(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"localhost", "10.0.0.0/33", "link-local", "10.0.0", "*"} {
		_, err := egress.Parse(s)
		require.Error(t, err, s)
		require.Contains(t, err.Error(), s)
	}
}

func TestControl(t *testing.T) {
	t.Parallel()
	p, err := egress.Parse("")
	require.NoError(t, err)
	require.NoError(t, p.Control("tcp4", "127.0.0.1:80", nil))
	require.NoError(t, p.Control("tcp6", "[2001:db8::1]:443", nil))
	require.True(t, egress.IsRefused(p.Control("tcp4", "169.254.169.254:80", nil)))
	require.True(t, egress.IsRefused(p.Control("tcp6", "[fe80::1%eth0]:80", nil)))
	require.True(t, egress.IsRefused(p.Control("tcp6", "[::ffff:169.254.169.254]:80", nil)))
	// An address that is not an IP cannot be checked, so it is refused.
	err = p.Control("tcp", "example.com:80", nil)
	require.Error(t, err)
	require.False(t, egress.IsRefused(err))
}

func TestDialerRefusesBeforeConnecting(t *testing.T) {
	t.Parallel()
	p, err := egress.Parse("loopback")
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()

	_, err = p.Dialer().DialContext(context.Background(), "tcp", ln.Addr().String())
	require.True(t, egress.IsRefused(err), "%v", err)
	var opErr *net.OpError
	require.ErrorAs(t, err, &opErr)

	// The listener works: an unrestricted dial is accepted.
	c, err := (&net.Dialer{}).Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	c.Close()
	<-accepted
	select {
	case <-accepted:
		t.Fatal("the refused dial reached the listener")
	default:
	}
}

func TestTransportAllowsLoopbackByDefault(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	p, err := egress.Parse("")
	require.NoError(t, err)
	tr := p.Transport()
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestTransportRefusesDeniedAddress(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	p, err := egress.Parse("127.0.0.0/8")
	require.NoError(t, err)
	_, err = (&http.Client{Transport: p.Transport()}).Get(srv.URL)
	require.True(t, egress.IsRefused(err), "%v", err)
	srv.Close() // waits for handlers, so hits is settled
	require.Zero(t, hits.Load())
}

// A redirect is dialed through the same policy: an allowed host cannot
// send the client to the metadata address. The dial is refused before
// any connection attempt, so the test needs no network.
func TestTransportRefusesRedirectToMetadata(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://[fd00:ec2::254]/"} {
		srv := httptest.NewServer(http.RedirectHandler(target, http.StatusFound))
		p, err := egress.Parse("")
		require.NoError(t, err)
		resp, err := (&http.Client{Transport: p.Transport()}).Get(srv.URL)
		srv.Close()
		if resp != nil {
			resp.Body.Close()
		}
		require.True(t, egress.IsRefused(err), "%s: %v", target, err)
		var re *egress.RefusedError
		require.True(t, errors.As(err, &re))
	}
}

func TestTransportsAreDistinct(t *testing.T) {
	t.Parallel()
	p := &egress.Policy{}
	require.NotSame(t, p.Transport(), p.Transport())
	require.NotSame(t, http.DefaultTransport, p.Transport())
	require.NotNil(t, p.Dialer().Control)
}
