package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/examples/internal/exampletest"
	"github.com/sniffsplice/sniff/examples/internal/selfsigned"
	"github.com/sniffsplice/sniff/internal/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a TLS server standing for one upstream service. After the
// handshake it greets the client with its name and the SNI it received,
// then echoes lines until the client closes or sends "bye" (answered, then
// the backend closes its side and waits for the client to close).
type backend struct {
	name string
	addr string
	cert tls.Certificate
}

func startBackend(t *testing.T, name string, hosts ...string) *backend {
	t.Helper()
	cert, err := selfsigned.New(name, hosts...)
	require.NoError(t, err)
	b := &backend{name: name, cert: cert}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	b.addr = testnet.Serve(t, func(c net.Conn) { b.serve(tls.Server(c, cfg)) }).Addr().String()
	return b
}

func (b *backend) serve(c *tls.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if c.Handshake() != nil {
		return
	}
	fmt.Fprintf(c, "%s: hello sni=%s\n", b.name, c.ConnectionState().ServerName)
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if _, werr := io.WriteString(c, line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
		if line == "bye\n" {
			// A graceful end: close_notify and FIN, then wait for the
			// client's own close before closing the socket, so nothing
			// the client still sends meets a closed socket (a reset).
			if c.CloseWrite() != nil {
				return
			}
			if tc, ok := c.NetConn().(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			io.Copy(io.Discard, c)
			return
		}
	}
}

// proxyServer is the program under test, started in-process.
type proxyServer struct {
	addr    string
	metrics string // the /metrics URL, "" when off
	out     *exampletest.Buffer
}

func startProxy(t *testing.T, cfg config) *proxyServer {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.DetectTimeout == 0 {
		cfg.DetectTimeout = 10 * time.Second
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	ready := make(chan net.Addr, 1)
	var metricsAddr net.Addr
	cfg.ready = func(a, m net.Addr) {
		metricsAddr = m
		ready <- a
	}
	addr, out := exampletest.RunInProcess(t, "sniproxy", ready, func(ctx context.Context, out io.Writer) error { return run(ctx, cfg, out) })
	ps := &proxyServer{addr: addr.String(), out: out}
	if metricsAddr != nil {
		ps.metrics = "http://" + metricsAddr.String() + "/metrics"
	}
	return ps
}

// dialTLS connects through the proxy with SNI serverName and verifies the
// server's certificate against want's alone: a handshake that succeeds
// proves want's backend, and no one else, answered.
func dialTLS(t *testing.T, proxyAddr, serverName string, want *backend) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	d := &net.Dialer{Timeout: 30 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", proxyAddr, &tls.Config{RootCAs: selfsigned.Pool(want.cert), ServerName: serverName})
	require.NoError(t, err, "handshake through the proxy with sni=%q", serverName)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, bufio.NewReader(c)
}

// converse checks the greeting and one echoed line, then says bye and
// checks the backend's close.
func converse(t *testing.T, c *tls.Conn, br *bufio.Reader, wantGreeting string) {
	t.Helper()
	greeting, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, wantGreeting, greeting)
	for _, line := range []string{"ping\n", "bye\n"} {
		_, err = io.WriteString(c, line)
		require.NoError(t, err)
		got, err := br.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, line, got)
	}
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	// The backend closed; closing here too ends the proxy's join. (Its
	// close_notify may meet a reset from the closed backend: no check.)
	c.Close()
}

type backends struct{ a, b, wild, deep, def *backend }

func startBackends(t *testing.T) backends {
	return backends{
		a:    startBackend(t, "backend-a", "a.test"),
		b:    startBackend(t, "backend-b", "b.test"),
		wild: startBackend(t, "backend-wild", "*.example.test", "x.y.example.test"),
		deep: startBackend(t, "backend-deep", "*.deep.example.test"),
		def:  startBackend(t, "backend-default", "example.test", "other.test"),
	}
}

func (bs backends) routes() []route {
	return []route{
		{"a.test", bs.a.addr},
		{"b.test", bs.b.addr},
		{"*.example.test", bs.wild.addr},
		{"*.deep.example.test", bs.deep.addr},
	}
}

func TestGoClientRoutesBySNI(t *testing.T) {
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes(), Default: bs.def.addr})
	for _, tc := range []struct {
		sni  string
		want *backend
		rule string
	}{
		{"a.test", bs.a, "a.test"},
		{"b.test", bs.b, "b.test"},
		{"x.example.test", bs.wild, "*.example.test"},
		{"x.y.example.test", bs.wild, "*.example.test"},         // a wildcard covers deeper names
		{"q.deep.example.test", bs.deep, "*.deep.example.test"}, // the longest wildcard wins
		{"example.test", bs.def, "default"},                     // *.example.test needs one more label
		{"other.test", bs.def, "default"},
	} {
		t.Run(tc.sni, func(t *testing.T) {
			c, br := dialTLS(t, p.addr, tc.sni, tc.want)
			defer c.Close()
			converse(t, c, br, tc.want.name+": hello sni="+tc.sni+"\n")
			require.Eventually(t, func() bool {
				return strings.Contains(p.out.String(), fmt.Sprintf("sni=%q route=%s backend=%s:", tc.sni, tc.rule, tc.want.addr))
			}, 30*time.Second, 10*time.Millisecond, "log line for %s", tc.sni)
		})
	}
}

// SNI compares case-insensitively; the backend still sees the name as sent.
func TestSNICaseInsensitive(t *testing.T) {
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes()})
	c, br := dialTLS(t, p.addr, "A.Test", bs.a)
	defer c.Close()
	converse(t, c, br, "backend-a: hello sni=A.Test\n")
}

// A hello without SNI goes to the default route.
func TestNoSNIDefault(t *testing.T) {
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes(), Default: bs.def.addr})
	c, err := tls.Dial("tcp", p.addr, &tls.Config{
		// Dialing an IP address with an empty ServerName sends no SNI; verify the
		// chain by hand against the default backend's certificate.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !cs.PeerCertificates[0].Equal(bs.def.cert.Leaf) {
				return errors.New("not the default backend's certificate")
			}
			return nil
		},
	})
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	converse(t, c, bufio.NewReader(c), "backend-default: hello sni=\n")
}

func TestUnknownNameRefused(t *testing.T) {
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes()})
	for _, sni := range []string{"unknown.test", "example.test", ""} {
		t.Run("sni="+sni, func(t *testing.T) {
			d := &net.Dialer{Timeout: 30 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", p.addr, &tls.Config{ServerName: sni, InsecureSkipVerify: sni == ""})
			if c != nil {
				c.Close()
			}
			require.Error(t, err)
			// crypto/tls reports an alert from the peer only by its text.
			require.ErrorContains(t, err, "remote error: tls: unrecognized name")
			require.Eventually(t, func() bool {
				return strings.Contains(p.out.String(), fmt.Sprintf("sni=%q: refused: no route (alert unrecognized_name)", sni))
			}, 30*time.Second, 10*time.Millisecond)
		})
	}
}

func TestBackendDownRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	l.Close() // nothing listens there now
	p := startProxy(t, config{Routes: []route{{"down.test", dead}}})
	d := &net.Dialer{Timeout: 30 * time.Second}
	_, err = tls.DialWithDialer(d, "tcp", p.addr, &tls.Config{ServerName: "down.test"})
	require.ErrorContains(t, err, "remote error: tls: internal error")
	require.Eventually(t, func() bool {
		return strings.Contains(p.out.String(), `sni="down.test" route=down.test backend=`+dead+": refused:")
	}, 30*time.Second, 10*time.Millisecond)
}

// Bytes that cannot start a TLS record are refused at once: the connection
// is closed without an answer.
func TestNotTLSRefused(t *testing.T) {
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes(), Default: bs.def.addr})
	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	require.NoError(t, err)
	n, err := c.Read(make([]byte, 1))
	require.Equal(t, 0, n)
	require.Error(t, err) // EOF, or a reset since the request was not read
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the proxy must close, not wait: %v", err)
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "refused: not TLS (no_match") }, 30*time.Second, 10*time.Millisecond)
}

// A client that never finishes its hello is dropped after the detection
// timeout.
func TestSilentClientTimesOut(t *testing.T) {
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes(), Default: bs.def.addr, DetectTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = c.Write([]byte{22, 3, 1}) // the start of a handshake record, then silence
	require.NoError(t, err)
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "closed by the proxy, not by our deadline: %v", err)
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "refused: not TLS (timeout") }, 30*time.Second, 10*time.Millisecond)
}

// Bulk data crosses the proxy both ways, and its counts are logged.
func TestBulkThroughProxy(t *testing.T) {
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes()})
	c, br := dialTLS(t, p.addr, "b.test", bs.b)
	defer c.Close()
	greeting, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "backend-b: hello sni=b.test\n", greeting)
	line := strings.Repeat("0123456789abcdef", 4096) + "\n" // 64 KiB
	const lines = 16
	errc := make(chan error, 1)
	go func() {
		for range lines {
			if _, err := io.WriteString(c, line); err != nil {
				errc <- err
				return
			}
		}
		_, err := io.WriteString(c, "bye\n")
		errc <- err
	}()
	for i := range lines {
		got, err := br.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, line, got, "line %d", i)
	}
	bye, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "bye\n", bye)
	require.NoError(t, <-errc)
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), `sni="b.test" route=b.test`) }, 30*time.Second, 10*time.Millisecond)
	logLine := ""
	for l := range strings.SplitSeq(p.out.String(), "\n") {
		if strings.Contains(l, `sni="b.test"`) {
			logLine = l
		}
	}
	m := regexp.MustCompile(`: (\d+) bytes up, (\d+) down, `).FindStringSubmatch(logLine)
	require.NotNil(t, m, "log line %q", logLine)
	up, err := strconv.ParseInt(m[1], 10, 64)
	require.NoError(t, err)
	down, err := strconv.ParseInt(m[2], 10, 64)
	require.NoError(t, err)
	require.Greater(t, up, int64(lines*len(line)), "client to backend bytes (TLS records add overhead)")
	require.Greater(t, down, int64(lines*len(line)))
}

// TestIdleTimeout: a proxied connection on which nothing moves for
// -idle-timeout is closed by the proxy (the loop's timer), and its log line
// says so.
func TestIdleTimeout(t *testing.T) {
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes(), IdleTimeout: 300 * time.Millisecond})
	c, br := dialTLS(t, p.addr, "a.test", bs.a)
	defer c.Close()
	greeting, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "backend-a: hello sni=a.test\n", greeting)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = br.ReadByte()
	require.Error(t, err, "the proxy closed the idle connection")
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "closed before the test's own deadline: %v", err)
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "idle timeout") }, 30*time.Second, 10*time.Millisecond, p.out.String())
}

func TestOpenSSLRoutesBySNI(t *testing.T) {
	openssl := exampletest.RequireProgram(t, "openssl", "openssl")
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes()})
	for _, tc := range []struct {
		sni  string
		want *backend
	}{
		{"a.test", bs.a},
		{"b.test", bs.b},
		{"z.example.test", bs.wild},
	} {
		t.Run(tc.sni, func(t *testing.T) {
			out := sClient(t, openssl, p.addr, tc.sni, "ping\nbye\n")
			require.Contains(t, out, tc.want.name+": hello sni="+tc.sni+"\n", "the greeting of the backend")
			require.Contains(t, out, "ping\nbye\n", "the echo")
			require.Regexp(t, `(?m)^subject=.*CN ?= ?`+tc.want.name+`$`, out, "the certificate s_client saw")
			for _, other := range []*backend{bs.a, bs.b, bs.wild, bs.deep} {
				if other != tc.want {
					require.NotContains(t, out, other.name+":")
				}
			}
		})
	}
}

func TestOpenSSLUnknownRefused(t *testing.T) {
	openssl := exampletest.RequireProgram(t, "openssl", "openssl")
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes()})
	out := sClient(t, openssl, p.addr, "nope.test", "")
	require.Contains(t, out, "unrecognized name")
	require.Contains(t, out, "alert number 112")
}

// sClient runs openssl s_client through the proxy with the given SNI and
// stdin and returns its combined output. -ign_eof keeps it reading after
// stdin ends, until the server closes.
func sClient(t *testing.T, openssl, addr, sni, stdin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, "-servername", sni, "-ign_eof")
	cmd.Stdin = strings.NewReader(stdin)
	out, _ := cmd.CombinedOutput() // the exit status is 1 for a refusal; the output is checked
	require.NoError(t, ctx.Err(), "s_client timed out: %s", out)
	return string(out)
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"-listen", "127.0.0.1:0", "-route", "A.test.=127.0.0.1:9001", "-route", "*.example.test=localhost:9002", "-default", "127.0.0.1:9003", "-idle-timeout", "0"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []route{{"a.test", "127.0.0.1:9001"}, {"*.example.test", "localhost:9002"}}, cfg.Routes)
	require.Equal(t, "127.0.0.1:9003", cfg.Default)
	require.Equal(t, time.Duration(0), cfg.IdleTimeout)
	require.Equal(t, 5*time.Second, cfg.DetectTimeout)

	_, err = parseFlags([]string{"-h"}, io.Discard)
	require.ErrorIs(t, err, flag.ErrHelp)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no routes"},
		{[]string{"-route", "a.test"}, `route "a.test": want NAME=HOST:PORT`},
		{[]string{"-route", "=127.0.0.1:1"}, "empty name"},
		{[]string{"-route", "a.test=127.0.0.1"}, `backend "127.0.0.1"`},
		{[]string{"-route", "a.test=:9001"}, "missing host"},
		{[]string{"-route", "a.test=127.0.0.1:0"}, "port must be a number from 1 to 65535"},
		{[]string{"-route", "a.test=127.0.0.1:http"}, "port must be a number"},
		{[]string{"-route", "*=127.0.0.1:1"}, "use -default"},
		{[]string{"-route", "a.*.test=127.0.0.1:1"}, "'*' is only allowed as the whole first label"},
		{[]string{"-route", "*a.test=127.0.0.1:1"}, "'*' is only allowed"},
		{[]string{"-route", "a..test=127.0.0.1:1"}, "every label must have 1 to 63 bytes"},
		{[]string{"-route", "-a.test=127.0.0.1:1"}, "may not start or end with '-'"},
		{[]string{"-route", "a b.test=127.0.0.1:1"}, "invalid character"},
		{[]string{"-route", strings.Repeat("a", 64) + ".test=127.0.0.1:1"}, "1 to 63 bytes"},
		{[]string{"-route", "a.test=127.0.0.1:1", "-route", "A.TEST=127.0.0.1:2"}, `route "a.test" given twice`},
		{[]string{"-default", "nowhere"}, `default: backend "nowhere"`},
		{[]string{"-route", "a.test=127.0.0.1:1", "-listen", "8443"}, `-listen "8443"`},
		{[]string{"-route", "a.test=127.0.0.1:1", "-detect-timeout", "0s"}, "-detect-timeout must be positive"},
		{[]string{"-route", "a.test=127.0.0.1:1", "-dial-timeout", "-1s"}, "-dial-timeout must be positive"},
		{[]string{"-route", "a.test=127.0.0.1:1", "extra"}, "unexpected arguments"},
		{[]string{"-bogus"}, "flag provided but not defined"},
		{[]string{"-route", "a.test=127.0.0.1:1", "-metrics", "9090"}, `-metrics "9090"`},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		require.ErrorIs(t, err, errUsage, "%q", tc.args)
		require.ErrorContains(t, err, tc.want, "%q", tc.args)
	}
}

func TestRouterLookup(t *testing.T) {
	r, err := newRouter([]route{
		{"a.test", "A:1"},
		{"*.example.test", "W:1"},
		{"*.deep.example.test", "D:1"},
		{"exact.example.test", "E:1"},
	}, "")
	require.NoError(t, err)
	for _, tc := range []struct {
		sni, backend, rule string
		ok                 bool
	}{
		{"a.test", "A:1", "a.test", true},
		{"A.TEST.", "A:1", "a.test", true},
		{"b.a.test", "", "", false}, // exact names have no subdomains
		{"x.example.test", "W:1", "*.example.test", true},
		{"exact.example.test", "E:1", "exact.example.test", true}, // exact beats wildcard
		{"a.deep.example.test", "D:1", "*.deep.example.test", true},
		{"deep.example.test", "W:1", "*.example.test", true},
		{"example.test", "", "", false},
		{"xexample.test", "", "", false},
		{"", "", "", false},
	} {
		b, rule, ok := r.lookup(tc.sni)
		require.Equal(t, tc.ok, ok, tc.sni)
		require.Equal(t, tc.backend, b, tc.sni)
		require.Equal(t, tc.rule, rule, tc.sni)
	}
	r, err = newRouter(nil, "D:1")
	require.NoError(t, err)
	b, rule, ok := r.lookup("")
	require.True(t, ok)
	require.Equal(t, "D:1", b)
	require.Equal(t, "default", rule)
}

func TestListenError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	err = run(context.Background(), config{Listen: l.Addr().String(), Default: "127.0.0.1:1", DetectTimeout: time.Second, DialTimeout: time.Second}, io.Discard)
	var opErr *net.OpError
	require.True(t, errors.As(err, &opErr), "want a listen error, got %v", err)
	err = run(context.Background(), config{Listen: "127.0.0.1:0", Metrics: l.Addr().String(), Default: "127.0.0.1:1", DetectTimeout: time.Second, DialTimeout: time.Second}, io.Discard)
	require.ErrorContains(t, err, "metrics listener")
}

// With -metrics, the proxied connections, their bytes and the detections
// are exported in Prometheus' text format with Linkerd's names.
func TestMetrics(t *testing.T) {
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes(), Metrics: "127.0.0.1:0"})
	require.NotEmpty(t, p.metrics)
	c, br := dialTLS(t, p.addr, "a.test", bs.a)
	converse(t, c, br, "backend-a: hello sni=a.test\n")
	plain, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	_, err = io.WriteString(plain, "GET / HTTP/1.0\r\n\r\n")
	require.NoError(t, err)
	plain.Close()
	require.Eventually(t, func() bool {
		return strings.Contains(p.out.String(), `sni="a.test" route=a.test`) && strings.Contains(p.out.String(), "refused: not TLS")
	}, 30*time.Second, 10*time.Millisecond)

	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(p.metrics)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	text := string(body)
	for _, want := range []string{
		`tcp_open_total{direction="inbound",protocol="TLS",tls="opaque"} 1`,
		`tcp_open_connections{direction="inbound",protocol="TLS",tls="opaque"} 0`,
		`tcp_close_total{direction="inbound",errno="",protocol="TLS",tls="opaque"} 1`,
		`protocol_detect_total{direction="inbound",protocol="TLS",reason="matched"} 1`,
		`protocol_detect_total{direction="inbound",protocol="unknown",reason="no_match"} 1`,
	} {
		require.Contains(t, text, want+"\n")
	}
	for _, name := range []string{"tcp_read_bytes_total", "tcp_write_bytes_total"} {
		m := regexp.MustCompile(`(?m)^` + name + `\{direction="inbound",protocol="TLS",tls="opaque"\} (\d+)$`).FindStringSubmatch(text)
		require.NotNil(t, m, "%s in\n%s", name, text)
		n, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		require.Greater(t, n, 100, name) // a ClientHello / the backend's flight, at least
	}
}

// choppyConn sends its first limit bytes in pieces of size bytes, pausing
// between them, so the ClientHello reaches the proxy in many TCP segments.
type choppyConn struct {
	net.Conn
	size, limit int
	sent        int
}

func (c *choppyConn) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 && c.sent < c.limit {
		k := min(c.size, len(b))
		w, err := c.Conn.Write(b[:k])
		n += w
		c.sent += w
		if err != nil {
			return n, err
		}
		b = b[k:]
		time.Sleep(time.Millisecond)
	}
	if len(b) == 0 {
		return n, nil
	}
	w, err := c.Conn.Write(b)
	return n + w, err
}

// A ClientHello that arrives in 7-byte segments (Go's default hello carries
// a post-quantum key share, about 1.5 KiB) is routed like any other.
func TestFragmentedHello(t *testing.T) {
	bs := startBackends(t)
	p := startProxy(t, config{Routes: bs.routes()})
	raw, err := net.Dial("tcp", p.addr)
	require.NoError(t, err)
	raw.SetDeadline(time.Now().Add(60 * time.Second))
	c := tls.Client(&choppyConn{Conn: raw, size: 7, limit: 4096}, &tls.Config{RootCAs: selfsigned.Pool(bs.b.cert), ServerName: "b.test"})
	defer c.Close()
	require.NoError(t, c.Handshake())
	converse(t, c, bufio.NewReader(c), "backend-b: hello sni=b.test\n")
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), `sni="b.test" route=b.test`) }, 30*time.Second, 10*time.Millisecond)
}
