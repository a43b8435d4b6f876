// Package iptables builds the NAT rules that make a sidecar transparent, the
// way linkerd-init installs them in a pod's network namespace: inbound TCP is
// redirected to the proxy's inbound port, outbound TCP from every process but
// the proxy itself is redirected to its outbound port, and skip ports are
// RETURN rules placed before the redirects.
//
// The package only builds argument lists; the proxy-init program runs them.
package iptables

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Chain names, as linkerd-init names them, so the rules look familiar.
const (
	InboundChain  = "PROXY_INIT_REDIRECT"
	OutboundChain = "PROXY_INIT_OUTPUT"
)

// PortRange is an inclusive range of TCP ports; Lo == Hi for a single port.
type PortRange struct{ Lo, Hi uint16 }

// String renders the range the way iptables' multiport match wants it.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d:%d", r.Lo, r.Hi)
}

// ParsePorts parses "25,587,4567-4568" (Linkerd's annotation syntax) into ranges.
func ParsePorts(s string) ([]PortRange, error) {
	var out []PortRange
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(f, "-")
		l, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		h := l
		if isRange {
			if h, err = parsePort(hi); err != nil {
				return nil, err
			}
			if h < l {
				return nil, fmt.Errorf("iptables: port range %q is reversed", f)
			}
		}
		out = append(out, PortRange{l, h})
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("iptables: bad port %q", s)
	}
	return uint16(n), nil
}

// Config says what to redirect. The zero value is not usable: the ports and
// the proxy's uid are required.
type Config struct {
	InboundPort  uint16 // the proxy's inbound listener, e.g. 4143
	OutboundPort uint16 // the proxy's outbound listener, e.g. 4140
	ProxyUID     int    // the uid the proxy runs as; its own traffic is never redirected
	// SkipInbound are ports whose inbound traffic bypasses the proxy. The
	// proxy's own admin port belongs here (linkerd-init adds 4190,4191).
	SkipInbound []PortRange
	// SkipOutbound are destination ports whose outbound traffic bypasses the proxy.
	SkipOutbound []PortRange
	// IPTables is the program to run, "iptables" when empty (ip6tables for IPv6).
	IPTables string
}

// ErrConfig reports a Config that cannot produce safe rules.
var ErrConfig = errors.New("iptables: bad config")

// Rules returns the commands, in order, each as an argument vector whose first
// element is the program. Running them in a fresh network namespace makes the
// sidecar transparent there.
func Rules(c Config) ([][]string, error) {
	if c.InboundPort == 0 || c.OutboundPort == 0 {
		return nil, fmt.Errorf("%w: inbound and outbound ports are required", ErrConfig)
	}
	if c.ProxyUID < 0 {
		return nil, fmt.Errorf("%w: proxy uid %d", ErrConfig, c.ProxyUID)
	}
	prog := c.IPTables
	if prog == "" {
		prog = "iptables"
	}
	nat := func(args ...string) []string { return append([]string{prog, "-w", "-t", "nat"}, args...) }
	var out [][]string
	// Inbound: everything arriving from outside goes to the inbound port,
	// except the skip ports.
	out = append(out, nat("-N", InboundChain))
	for _, group := range multiport(c.SkipInbound) {
		out = append(out, nat("-A", InboundChain, "-p", "tcp", "-m", "multiport", "--dports", group,
			"-m", "comment", "--comment", "sidecar/skip-inbound", "-j", "RETURN"))
	}
	out = append(out, nat("-A", InboundChain, "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(int(c.InboundPort)),
		"-m", "comment", "--comment", "sidecar/redirect-inbound"))
	out = append(out, nat("-A", "PREROUTING", "-j", InboundChain))
	// Outbound: the proxy's own connections and loopback traffic pass; skip
	// ports pass; everything else goes to the outbound port.
	out = append(out, nat("-N", OutboundChain))
	out = append(out, nat("-A", OutboundChain, "-m", "owner", "--uid-owner", strconv.Itoa(c.ProxyUID),
		"-m", "comment", "--comment", "sidecar/ignore-proxy-uid", "-j", "RETURN"))
	out = append(out, nat("-A", OutboundChain, "-o", "lo",
		"-m", "comment", "--comment", "sidecar/ignore-loopback", "-j", "RETURN"))
	for _, group := range multiport(c.SkipOutbound) {
		out = append(out, nat("-A", OutboundChain, "-p", "tcp", "-m", "multiport", "--dports", group,
			"-m", "comment", "--comment", "sidecar/skip-outbound", "-j", "RETURN"))
	}
	out = append(out, nat("-A", OutboundChain, "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(int(c.OutboundPort)),
		"-m", "comment", "--comment", "sidecar/redirect-outbound"))
	out = append(out, nat("-A", "OUTPUT", "-j", OutboundChain))
	return out, nil
}

// multiport groups ranges into --dports lists of at most 15 ports, a range
// counting as two, which is the multiport match's limit.
func multiport(rs []PortRange) []string {
	var groups []string
	var cur []string
	n := 0
	for _, r := range rs {
		w := 1
		if r.Lo != r.Hi {
			w = 2
		}
		if n+w > 15 {
			groups = append(groups, strings.Join(cur, ","))
			cur, n = nil, 0
		}
		cur = append(cur, r.String())
		n += w
	}
	if len(cur) > 0 {
		groups = append(groups, strings.Join(cur, ","))
	}
	return groups
}
