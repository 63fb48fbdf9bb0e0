// Package egress holds the policy on the addresses Bud connects to when it
// calls a URL an admin configured: model deployments, MCP servers, Slack,
// Notion and http connections, and every redirect they send.
//
// The policy is checked when a connection is dialed, on the address DNS
// resolved to, so a name that resolves elsewhere after it was saved is
// still checked. A request sent through a proxy (HTTP_PROXY, HTTPS_PROXY)
// is checked at the proxy's address; the proxy decides for the target.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// The words Parse accepts besides CIDRs.
const (
	// Loopback refuses 127.0.0.0/8, ::1 and the unspecified addresses
	// 0.0.0.0 and ::, which reach the local host too.
	Loopback = "loopback"
	// Private refuses 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 and
	// fc00::/7.
	Private = "private"
)

// defaultDeny is refused by every policy: link-local addresses, where cloud
// instance metadata (and its credentials) is served, and AWS's IPv6
// metadata address, which lies inside the otherwise allowed fc00::/7.
var defaultDeny = []rule{
	{prefix: netip.MustParsePrefix("169.254.0.0/16"), name: "link-local"},
	{prefix: netip.MustParsePrefix("fe80::/10"), name: "link-local"},
	{prefix: netip.MustParsePrefix("fd00:ec2::254/128"), name: "cloud metadata"},
}

// nat64 is the well-known NAT64 prefix: an address in it reaches the IPv4
// address in its last 32 bits.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

type rule struct {
	prefix netip.Prefix
	name   string
}

// Policy says which addresses may be dialed. The zero value, and a nil
// *Policy, refuse only the defaults (link-local and cloud metadata
// addresses); Parse adds more. A Policy is not changed after Parse and is
// safe for concurrent use.
type Policy struct {
	loopback bool
	private  bool
	deny     []rule
}

// Parse returns the policy that refuses the defaults plus what s names: a
// comma-separated list of CIDRs (or single addresses) and the words
// Loopback and Private. Blank entries are ignored, so "" is the default
// policy.
func Parse(s string) (*Policy, error) {
	p := &Policy{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch strings.ToLower(f) {
		case "":
			continue
		case Loopback:
			p.loopback = true
			continue
		case Private:
			p.private = true
			continue
		}
		prefix, err := netip.ParsePrefix(f)
		if err != nil {
			addr, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("egress: %q is neither a CIDR, an address, %q nor %q", f, Loopback, Private)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		prefix = prefix.Masked()
		if prefix.Addr().Is4In6() {
			// Dialed addresses are unmapped before they are matched.
			prefix = netip.PrefixFrom(prefix.Addr().Unmap(), max(prefix.Bits()-96, 0))
		}
		p.deny = append(p.deny, rule{prefix: prefix, name: prefix.String()})
	}
	return p, nil
}

// RefusedError is the error of a dial the policy refused. Its text names
// the address and the rule, never the URL it was dialed for.
type RefusedError struct {
	Addr netip.Addr
	// Rule names what refused it: "link-local", "cloud metadata",
	// "loopback", "private" or a configured CIDR.
	Rule string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("egress policy refuses %s (%s)", e.Addr, e.Rule)
}

// IsRefused reports whether err, or an error it wraps, is a *RefusedError.
func IsRefused(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}

// Check returns a *RefusedError when p refuses addr, else nil.
func (p *Policy) Check(addr netip.Addr) error {
	// Prefixes never contain a zoned address: match without the zone.
	addr = addr.Unmap().WithZone("")
	if err := p.check(addr); err != nil {
		return err
	}
	if addr.Is6() && nat64.Contains(addr) {
		b := addr.As16()
		v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if err := p.check(v4); err != nil {
			return &RefusedError{Addr: addr, Rule: err.(*RefusedError).Rule + " via NAT64"}
		}
	}
	return nil
}

func (p *Policy) check(addr netip.Addr) error {
	for _, r := range defaultDeny {
		if r.prefix.Contains(addr) {
			return &RefusedError{Addr: addr, Rule: r.name}
		}
	}
	if p == nil {
		return nil
	}
	if p.loopback && (addr.IsLoopback() || addr.IsUnspecified()) {
		return &RefusedError{Addr: addr, Rule: Loopback}
	}
	if p.private && addr.IsPrivate() {
		return &RefusedError{Addr: addr, Rule: Private}
	}
	for _, r := range p.deny {
		if r.prefix.Contains(addr) {
			return &RefusedError{Addr: addr, Rule: r.name}
		}
	}
	return nil
}

// Control is a net.Dialer Control function: it refuses, before the
// connection is attempted, a dial of an address p refuses. address is the
// resolved "ip:port" the dialer is about to connect to; one that is not an
// IP address is refused, since it cannot be checked.
func (p *Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress policy cannot check %s address %q: %w", network, address, err)
	}
	return p.Check(ap.Addr())
}

// Dialer returns a dialer that applies p, with the timeouts of
// http.DefaultTransport's dialer.
func (p *Policy) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.Control}
}

// Transport returns a new transport like http.DefaultTransport whose dials
// apply p. Each call returns a transport of its own.
func (p *Policy) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = p.Dialer().DialContext
	return t
}
