package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDryRunWithPolicyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "annotations")
	require.NoError(t, os.WriteFile(p, []byte(
		"config.linkerd.io/skip-outbound-ports: \"443,5000-5010\"\nconfig.linkerd.io/proxy-uid: \"999\"\n"), 0o644))
	var out, errb bytes.Buffer
	require.NoError(t, run([]string{"-dry-run", "-policy", p, "-skip-inbound-ports", "4191", "-netns", "podA"}, &out, &errb))
	s := out.String()
	require.Contains(t, s, "ip netns exec podA iptables -w -t nat -A PROXY_INIT_OUTPUT -p tcp -m multiport --dports 443,5000:5010 ")
	require.Contains(t, s, "--dports 4191 ")
	require.Contains(t, s, "--uid-owner 999 ")
	require.Equal(t, 10, strings.Count(s, "\n"))
}

func TestRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-dry-run", "-skip-inbound-ports", "80,x"},
		{"-dry-run", "-inbound-port", "0"},
		{"-dry-run", "-policy", "/nonexistent/annotations"},
		{"-dry-run", "extra"},
	} {
		var out, errb bytes.Buffer
		require.Error(t, run(args, &out, &errb), "%q", args)
		require.Empty(t, out.String())
	}
}
