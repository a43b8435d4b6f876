package iptables

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePorts(t *testing.T) {
	rs, err := ParsePorts("25, 587,4567-4568")
	require.NoError(t, err)
	require.Equal(t, []PortRange{{25, 25}, {587, 587}, {4567, 4568}}, rs)
	for _, bad := range []string{"0", "x", "70000", "9-3", "1-"} {
		_, err := ParsePorts(bad)
		require.Error(t, err, bad)
	}
}

func TestRules(t *testing.T) {
	rs, err := Rules(Config{InboundPort: 4143, OutboundPort: 4140, ProxyUID: 2102,
		SkipInbound: []PortRange{{4190, 4191}}, SkipOutbound: []PortRange{{443, 443}}})
	require.NoError(t, err)
	var lines []string
	for _, r := range rs {
		require.Equal(t, "iptables", r[0])
		lines = append(lines, strings.Join(r[1:], " "))
	}
	want := []string{
		"-w -t nat -N PROXY_INIT_REDIRECT",
		"-w -t nat -A PROXY_INIT_REDIRECT -p tcp -m multiport --dports 4190:4191 -m comment --comment sidecar/skip-inbound -j RETURN",
		"-w -t nat -A PROXY_INIT_REDIRECT -p tcp -j REDIRECT --to-ports 4143 -m comment --comment sidecar/redirect-inbound",
		"-w -t nat -A PREROUTING -j PROXY_INIT_REDIRECT",
		"-w -t nat -N PROXY_INIT_OUTPUT",
		"-w -t nat -A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -m comment --comment sidecar/ignore-proxy-uid -j RETURN",
		"-w -t nat -A PROXY_INIT_OUTPUT -o lo -m comment --comment sidecar/ignore-loopback -j RETURN",
		"-w -t nat -A PROXY_INIT_OUTPUT -p tcp -m multiport --dports 443 -m comment --comment sidecar/skip-outbound -j RETURN",
		"-w -t nat -A PROXY_INIT_OUTPUT -p tcp -j REDIRECT --to-ports 4140 -m comment --comment sidecar/redirect-outbound",
		"-w -t nat -A OUTPUT -j PROXY_INIT_OUTPUT",
	}
	require.Equal(t, want, lines)

	_, err = Rules(Config{OutboundPort: 4140})
	require.True(t, errors.Is(err, ErrConfig))
}

func TestMultiportLimit(t *testing.T) {
	var rs []PortRange
	for p := uint16(1000); p < 1020; p++ { // 20 single ports
		rs = append(rs, PortRange{p, p})
	}
	rs = append(rs, PortRange{2000, 2010})
	groups := multiport(rs)
	require.Len(t, groups, 2)
	require.Equal(t, 15, len(strings.Split(groups[0], ",")))
	require.Equal(t, "1015,1016,1017,1018,1019,2000:2010", groups[1])
}
