package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/examples/internal/exampletest"
	"github.com/sniffsplice/sniff/examples/sidecar/internal/testserver"
	"github.com/sniffsplice/sniff/examples/sidecar/proxy"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	clientID = "spiffe://test.sidecar/ns/default/sa/client"
	serverID = "spiffe://test.sidecar/ns/default/sa/server"
)

// identities writes a throw-away CA's SVIDs for the client and server
// sidecars as PEM files and returns the flag sets that load them.
func identities(t testing.TB) (client, server []string) {
	t.Helper()
	ca := mtlstest.MustNew("test.sidecar")
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	flags := func(prefix, id string) []string {
		f, err := mtlstest.WritePEM(dir, prefix, ca.Issue(id), ca.Bundle())
		require.NoError(t, err)
		for _, p := range []string{f.Cert, f.Key, f.Bundle} {
			require.NoError(t, os.Chmod(p, 0o644)) // readable by a proxy uid in the netns test
		}
		return []string{"-cert", f.Cert, "-key", f.Key, "-bundle", f.Bundle}
	}
	return flags("client", clientID), flags("server", serverID)
}

// startSidecar runs the binary's code (run) with args until the test ends.
func startSidecar(t testing.TB, args ...string) (*proxy.Sidecar, *exampletest.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *proxy.Sidecar, 1)
	done := make(chan error, 1)
	var out exampletest.Buffer
	go func() { done <- run(ctx, args, &out, &out, func(s *proxy.Sidecar) { started <- s }) }()
	select {
	case s := <-started:
		t.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("sidecar did not stop")
			}
		})
		return s, &out
	case err := <-done:
		cancel()
		t.Fatalf("sidecar %q did not start: %v\n%s", args, err, out.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("sidecar did not start")
	}
	return nil, nil
}

// pair starts a server-side sidecar (inbound) and a client-side one with an
// explicit outbound listener for dst; it returns the address the client
// connects to and both sidecars. extra flags go to both.
//
// Both log every connection (-v); when the test fails, what each saw is
// printed once they have stopped: their events (path, detection, bytes,
// error) and their metrics, so that a failure names its cause.
func pair(t testing.TB, dst netip.AddrPort, extra ...string) (string, *proxy.Sidecar, *proxy.Sidecar) {
	t.Helper()
	cf, sf := identities(t)
	var sides []sidecarLog
	// Registered before the sidecars start, so it runs after they have
	// stopped (cleanups run last first) and every connection's event is in.
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range sides {
				t.Logf("sidecar %s saw:\n%s\n%s", s.name, s.out.String(), metricLines(s.s))
			}
		}
	})
	srv, srvOut := startSidecar(t, append(append(sf, "-v", "-inbound", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-allow", clientID), extra...)...)
	sides = append(sides, sidecarLog{"B (inbound)", srv, srvOut})
	cli, cliOut := startSidecar(t, append(append(cf, "-v", "-forward", "127.0.0.1:0="+dst.String(), "-admin", "127.0.0.1:0",
		"-peer", srv.InboundAddr.String(), "-peer-id", serverID), extra...)...)
	sides = append(sides, sidecarLog{"A (outbound)", cli, cliOut})
	return cli.ForwardAddrs[0].String(), cli, srv
}

// sidecarLog is one sidecar of a pair with its output (its -v events).
type sidecarLog struct {
	name string
	s    *proxy.Sidecar
	out  *exampletest.Buffer
}

// metricLines returns what a sidecar counted, read from its registry (its
// admin listener may be closed): its own metrics that are not 0, without
// comments, histogram buckets or the runtime's and process's.
func metricLines(s *proxy.Sidecar) string {
	rec := httptest.NewRecorder()
	proxy.MetricsHandler(s.Proxy.Metrics).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var b strings.Builder
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if l == "" || strings.HasPrefix(l, "#") || strings.HasSuffix(l, " 0") || strings.Contains(l, "_bucket{") ||
			strings.HasPrefix(l, "go_") || strings.HasPrefix(l, "process_") {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

func TestFlagsRefused(t *testing.T) {
	cf, _ := identities(t)
	bad := filepath.Join(t.TempDir(), "annotations")
	require.NoError(t, os.WriteFile(bad, []byte("config.linkerd.io/opaque-ports: \"3306,70000\"\n"), 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "nothing to do"},
		{[]string{"-inbound", "127.0.0.1:0"}, "-cert, -key and -bundle are required"},
		{append([]string{"-inbound", "nohost"}, cf...), "-inbound \"nohost\""},
		{append([]string{"-forward", "127.0.0.1:0"}, cf...), "want LISTEN=DST"},
		{append([]string{"-forward", "127.0.0.1:0=db:5432"}, cf...), "destination: want ip:port"},
		{append([]string{"-inbound", "127.0.0.1:0", "-opaque-ports", "3306,x"}, cf...), "-opaque-ports"},
		{append([]string{"-inbound", "127.0.0.1:0", "-policy", bad}, cf...), "line 1"},
		{append([]string{"-inbound", "127.0.0.1:0", "-policy", "/nonexistent"}, cf...), "/nonexistent"},
		{append([]string{"-inbound", "127.0.0.1:0", "-declare", "8080=SPDY"}, cf...), "-declare"},
		{append([]string{"-inbound", "127.0.0.1:0", "-allow", "not-an-id"}, cf...), "-allow"},
		{append([]string{"-inbound", "127.0.0.1:0", "-grpc", "loud"}, cf...), "-grpc"},
		{append([]string{"-inbound", "127.0.0.1:0", "-header-timeout", "-1s"}, cf...), "-header-timeout"},
		{[]string{"-inbound", "127.0.0.1:0", "-cert", "/nonexistent.crt", "-key", "/nonexistent.key", "-bundle", "/x"}, "-cert/-key"},
		{append([]string{"-bogus"}, cf...), "flag provided but not defined"},
	} {
		var out strings.Builder
		err := run(context.Background(), tc.args, &out, &out, nil)
		require.Error(t, err, "%q", tc.args)
		require.True(t, errors.Is(err, errUsage), "%q: %v", tc.args, err)
		require.Contains(t, err.Error(), tc.want, "%q", tc.args)
	}
	// A listener that cannot be opened is refused at start too.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	err = run(context.Background(), append([]string{"-inbound", l.Addr().String()}, cf...), io.Discard, io.Discard, nil)
	require.ErrorContains(t, err, "inbound listener")
}

// echoServer answers each line with "echo: line".
func echoServer(t testing.TB) netip.AddrPort {
	t.Helper()
	return testserver.Serve(t, func(c net.Conn) {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintf(c, "echo: %s\n", sc.Text())
		}
	})
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestPairAndAdmin(t *testing.T) {
	dst := echoServer(t)
	addr, cli, srv := pair(t, dst, "-opaque-ports", fmt.Sprint(dst.Port()))

	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	for i := range 3 {
		fmt.Fprintf(c, "line %d\n", i)
		got, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("echo: line %d\n", i), got)
	}
	c.Close()

	for _, s := range []*proxy.Sidecar{cli, srv} {
		base := "http://" + s.AdminAddr.String()
		code, body := get(t, base+"/live")
		require.Equal(t, 200, code)
		require.Equal(t, "live\n", body)
		code, body = get(t, base+"/ready")
		require.Equal(t, 200, code)
		require.Equal(t, "ready\n", body)
	}
	// The connection's end is counted once both sidecars have closed it.
	want := map[*proxy.Sidecar][]string{
		cli: {`tcp_open_total{direction="outbound",protocol="opaque",tls="true"} 1`,
			`tcp_read_bytes_total{direction="outbound",protocol="opaque",tls="true"} 21`,
			`tcp_write_bytes_total{direction="outbound",protocol="opaque",tls="true"} 39`,
			`policy_decision_total{action="opaque",direction="outbound"`,
			`transport_header_written_total`},
		srv: {`tcp_open_total{direction="inbound",protocol="opaque",tls="true"} 1`,
			`tcp_read_bytes_total{direction="inbound",protocol="opaque",tls="true"} 21`,
			`transport_header_read_total`,
			`tls_handshake_total{direction="inbound",outcome="success"`},
	}
	for s, lines := range want {
		require.Eventually(t, func() bool {
			_, body := get(t, "http://"+s.AdminAddr.String()+"/metrics")
			for _, l := range lines {
				if !strings.Contains(body, l) {
					t.Logf("missing %s in\n%s", l, body)
					return false
				}
			}
			return true
		}, 10*time.Second, 50*time.Millisecond)
	}
}

// TestWrongPeerRefused: the client sidecar refuses a peer with another
// identity, and the server sidecar refuses a client it does not allow.
func TestWrongPeerRefused(t *testing.T) {
	dst := echoServer(t)
	cf, sf := identities(t)
	srv, _ := startSidecar(t, append(sf, "-inbound", "127.0.0.1:0", "-allow", "spiffe://test.sidecar/ns/other/*")...)
	for _, tc := range []struct {
		peerID, want string
	}{
		{clientID, "unexpected peer identity"}, // the server is not the client
		{serverID, ""},                         // right peer, but the server does not allow us
	} {
		cli, out := startSidecar(t, append(cf, "-v", "-forward", "127.0.0.1:0="+dst.String(),
			"-peer", srv.InboundAddr.String(), "-peer-id", tc.peerID)...)
		c, err := net.Dial("tcp", cli.ForwardAddrs[0].String())
		require.NoError(t, err)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "hello\n")
		got, err := io.ReadAll(c) // EOF or a reset: closed either way, and nothing echoed
		c.Close()
		if err != nil {
			require.True(t, errors.Is(err, syscall.ECONNRESET), "%v", err)
		}
		require.Empty(t, got)
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "err=") }, 10*time.Second, 20*time.Millisecond)
		require.NotContains(t, out.String(), "echo")
		if tc.want != "" {
			require.Contains(t, out.String(), tc.want)
		}
	}
}
