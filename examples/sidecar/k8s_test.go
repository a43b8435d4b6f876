package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/examples/sidecar/internal/policyfile"
)

// manifestList returns the "- item" lines that follow the first line equal to
// key after the line equal to after (both compared trimmed), in the k8s
// manifest. A tiny reader for our own file, so the test needs no YAML module.
func manifestList(t *testing.T, lines []string, after, key string) []string {
	t.Helper()
	i := 0
	for ; i < len(lines) && strings.TrimSpace(lines[i]) != after; i++ {
	}
	for ; i < len(lines) && strings.TrimSpace(lines[i]) != key; i++ {
	}
	require.Less(t, i, len(lines), "%s / %s not in the manifest", after, key)
	var out []string
	for _, l := range lines[i+1:] {
		item, ok := strings.CutPrefix(strings.TrimSpace(l), "- ")
		if !ok {
			break
		}
		out = append(out, item)
	}
	return out
}

// TestKubernetesManifest checks that the Deployment's sidecar arguments are
// accepted by the binary, and that the pod annotations, as the kubelet's
// downward API writes them, are a valid policy file.
func TestKubernetesManifest(t *testing.T) {
	b, err := os.ReadFile("k8s/deployment.yaml")
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")

	// The downward API file: key="value" lines, values quoted as Go does.
	annotations := map[string]string{}
	in := false
	for _, l := range lines {
		s := strings.TrimSpace(l)
		switch {
		case s == "annotations:":
			in = true
		case in && strings.HasPrefix(s, "#"):
		case in && strings.HasPrefix(s, "config.linkerd.io/"):
			k, v, _ := strings.Cut(s, ": ")
			uq, err := strconv.Unquote(v)
			require.NoError(t, err, s)
			annotations[k] = uq
		case in:
			in = false
		}
	}
	require.Equal(t, "6379", annotations["config.linkerd.io/opaque-ports"])
	var sb strings.Builder
	for k, v := range annotations {
		fmt.Fprintf(&sb, "%s=%q\n", k, v)
	}
	podinfo := filepath.Join(t.TempDir(), "annotations")
	require.NoError(t, os.WriteFile(podinfo, []byte(sb.String()), 0o644))
	pf, err := policyfile.Load(podinfo)
	require.NoError(t, err)
	require.True(t, pf.Layer.OpaquePorts.Contains(6379))
	require.True(t, pf.Layer.SkipOutboundPorts.Contains(443))
	require.Equal(t, 2102, pf.ProxyUID)

	// The sidecar container's arguments, with the identity files and the
	// policy file pointing at test copies and the listeners on free ports.
	cf, _ := identities(t)
	files := map[string]string{"-cert": cf[1], "-key": cf[3], "-bundle": cf[5], "-policy": podinfo}
	var args []string
	for _, a := range manifestList(t, lines, "- name: sidecar", "args:") {
		name, val, hasVal := strings.Cut(a, "=")
		switch {
		case files[name] != "":
			val = files[name]
		case hasVal && strings.Contains(val, ":"):
			val = "127.0.0.1:0"
		}
		if hasVal {
			a = name + "=" + val
		}
		args = append(args, a)
	}
	require.Contains(t, args, "-inbound-transparent")
	cfg, err := parseConfig(args, os.Stderr)
	require.NoError(t, err, "%q", args)
	require.NotEmpty(t, cfg.listeners.Outbound)
	require.NotEmpty(t, cfg.listeners.Inbound)
	require.NotEmpty(t, cfg.listeners.Admin)

	initArgs := manifestList(t, lines, "- name: proxy-init", "args:")
	require.Contains(t, initArgs, "-proxy-uid=2102")
	require.Contains(t, initArgs, "-policy=/etc/podinfo/annotations")
}
