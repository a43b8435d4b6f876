package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/examples/sidecar/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDemo runs the demo in-process, exactly as `go run ./examples/sidecar/demo`
// does, and checks its table.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rows, err := run(ctx, &out, options{DetectTimeout: 10 * time.Second, Silence: 500 * time.Millisecond})
	t.Log("\n" + out.String())
	require.NoError(t, err)
	require.Len(t, rows, 6)
	for _, r := range rows {
		require.NoError(t, r.Err, r.Name)
	}
	require.Contains(t, out.String(), "all 6 rows correct")

	byName := map[string]*row{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	// The server-first row never waited for the 10 s detection timeout.
	smtp := byName["smtp"]
	require.Equal(t, proxy.PathServerFirst, smtp.Out.Path)
	require.Equal(t, detect.ReasonServerFirst, smtp.Out.Detect.Reason)
	require.Less(t, smtp.TTFB, time.Second)
	// The silent client was served as soon as it spoke.
	mc := byName["memcache"]
	require.Equal(t, detect.Unknown, mc.Out.Protocol)
	require.Less(t, mc.TTFB, time.Second)
	// The table shows every row with the identity sidecar B saw.
	for _, name := range []string{"http1", "h2c", "grpc", "smtp", "redis", "memcache"} {
		line := lineOf(out.String(), name+" ")
		require.Contains(t, line, "spiffe://demo.test/ns/default/sa/client", name)
		require.True(t, strings.HasSuffix(strings.TrimSpace(line), "ok"), line)
	}
}

// TestDemoWithoutRace shows Linkerd's behaviour for contrast: with racing off,
// the server-speaks-first backend is served only after the detection timeout.
func TestDemoWithoutRace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	const timeout = 400 * time.Millisecond
	rows, err := run(ctx, &out, options{DetectTimeout: timeout, NoRace: true, Silence: 100 * time.Millisecond})
	t.Log("\n" + out.String())
	require.NoError(t, err)
	for _, r := range rows {
		require.NoError(t, r.Err, r.Name)
		if r.Name == "smtp" {
			require.Equal(t, proxy.PathDetect, r.Out.Path)
			require.Equal(t, detect.ReasonTimeout, r.Out.Detect.Reason)
			require.GreaterOrEqual(t, r.TTFB, timeout, "the greeting waited for the detection timeout")
		}
	}
}

func lineOf(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
