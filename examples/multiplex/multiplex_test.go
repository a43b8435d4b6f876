package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sniffsplice/sniff/examples/internal/exampletest"
	"github.com/sniffsplice/sniff/examples/internal/selfsigned"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is one multiplexer started in-process by start.
type server struct {
	addr string
	cert tls.Certificate
	out  *exampletest.Buffer
}

// start runs the program on a free loopback port until the test ends, and
// checks then that it stopped cleanly.
func start(t *testing.T, cfg config) *server {
	t.Helper()
	cert, err := selfsigned.New("multiplex test", "localhost", "127.0.0.1")
	require.NoError(t, err)
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.DetectTimeout == 0 {
		cfg.DetectTimeout = 10 * time.Second
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	cfg.certificate = &cert
	ready := make(chan net.Addr, 1)
	cfg.ready = func(a net.Addr) { ready <- a }
	addr, out := exampletest.RunInProcess(t, "multiplex", ready, func(ctx context.Context, out io.Writer) error { return run(ctx, cfg, out) })
	return &server{addr: addr.String(), cert: cert, out: out}
}

func (s *server) clientTLS(nextProtos ...string) *tls.Config {
	return &tls.Config{RootCAs: selfsigned.Pool(s.cert), ServerName: "localhost", NextProtos: nextProtos}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return resp, string(body)
}

func TestHTTP1NetHTTP(t *testing.T) {
	s := start(t, config{})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, body := get(t, &http.Client{Transport: tr}, "http://"+s.addr+"/hello")
	require.Equal(t, "HTTP/1.1", resp.Proto)
	require.Equal(t, "multiplex: GET /hello HTTP/1.1 tls=none\n", body)
	// A second request on the same (kept-alive) connection.
	_, body = get(t, &http.Client{Transport: tr}, "http://"+s.addr+"/again")
	require.Equal(t, "multiplex: GET /again HTTP/1.1 tls=none\n", body)
	// PATCH is a method like any other (cmux's HTTP/1 matcher missed it).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, "http://"+s.addr+"/patched", strings.NewReader("x"))
	require.NoError(t, err)
	resp, err = (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, "multiplex: PATCH /patched HTTP/1.1 tls=none\n", string(got))
}

func TestH2CNetHTTP(t *testing.T) {
	s := start(t, config{})
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protos}
	defer tr.CloseIdleConnections()
	resp, body := get(t, &http.Client{Transport: tr}, "http://"+s.addr+"/h2c")
	require.Equal(t, "HTTP/2.0", resp.Proto)
	require.Equal(t, "multiplex: GET /h2c HTTP/2.0 tls=none\n", body)
}

func TestH2CXNetHTTP2(t *testing.T) {
	s := start(t, config{})
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	resp, body := get(t, &http.Client{Transport: tr}, "http://"+s.addr+"/x-net")
	require.Equal(t, "HTTP/2.0", resp.Proto)
	require.Equal(t, "multiplex: GET /x-net HTTP/2.0 tls=none\n", body)
}

func TestTLSNetHTTP(t *testing.T) {
	s := start(t, config{})
	for _, tc := range []struct {
		name      string
		forceH2   bool
		nextProto []string
		want      string
	}{
		{"h2", true, nil, `multiplex: GET /tls HTTP/2.0 tls="TLS 1.3" alpn=h2 sni=localhost` + "\n"},
		{"http1.1", false, []string{"http/1.1"}, `multiplex: GET /tls HTTP/1.1 tls="TLS 1.3" alpn=http/1.1 sni=localhost` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tlsCfg := s.clientTLS(tc.nextProto...)
			tr := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: tc.forceH2}
			defer tr.CloseIdleConnections()
			_, body := get(t, &http.Client{Transport: tr}, "https://localhost:"+port(t, s.addr)+"/tls")
			require.Equal(t, tc.want, body)
		})
	}
}

// Bodies of 1 MiB cross every HTTP path intact: nothing the detector looked
// at, nor anything after it, is lost or reordered.
func TestEchoBody(t *testing.T) {
	s := start(t, config{})
	body := make([]byte, 1<<20)
	_, err := rand.Read(body)
	require.NoError(t, err)
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	for _, tc := range []struct {
		name, scheme, proto string
		tr                  *http.Transport
	}{
		{"http1.1", "http", "HTTP/1.1", &http.Transport{}},
		{"h2c", "http", "HTTP/2.0", &http.Transport{Protocols: h2c}},
		{"tls-h2", "https", "HTTP/2.0", &http.Transport{TLSClientConfig: s.clientTLS(), ForceAttemptHTTP2: true}},
		{"tls-http1.1", "https", "HTTP/1.1", &http.Transport{TLSClientConfig: s.clientTLS("http/1.1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.tr.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			url := tc.scheme + "://localhost:" + port(t, s.addr) + "/echo"
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			require.NoError(t, err)
			tc.tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, s.addr)
			}
			resp, err := (&http.Client{Transport: tc.tr}).Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, tc.proto, resp.Proto)
			require.True(t, bytes.Equal(body, got), "echoed body differs (%d bytes back)", len(got))
		})
	}
}

func TestGRPC(t *testing.T) {
	s := start(t, config{})
	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
	}{
		{"plaintext", insecure.NewCredentials()},
		{"tls", credentials.NewTLS(s.clientTLS())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, err := grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(tc.creds), grpc.WithAuthority("localhost"))
			require.NoError(t, err)
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			hc, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: echoService})
			require.NoError(t, err)
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, hc.GetStatus())

			out := new(wrapperspb.StringValue)
			require.NoError(t, cc.Invoke(ctx, echoMethod, wrapperspb.String("over "+tc.name), out))
			require.Equal(t, "echo: over "+tc.name, out.GetValue())

			big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB in one message
			require.NoError(t, cc.Invoke(ctx, echoMethod, wrapperspb.String(big), out))
			require.True(t, out.GetValue() == "echo: "+big, "1 MiB message echoed intact")
		})
	}
	// The program logged the gRPC connections as such, inside TLS too.
	require.Contains(t, s.out.String(), ": gRPC (matched")
	require.Contains(t, s.out.String(), `alpn="h2"): gRPC (matched)`)
}

func TestRawTCPEcho(t *testing.T) {
	s := start(t, config{})
	c, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for _, line := range []string{"hello raw tcp\n", "second line\n"} {
		_, err = io.WriteString(c, line)
		require.NoError(t, err)
		got, err := br.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, line, got)
	}
	// Half-close: the echo answers the end of stream with its own.
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	require.Contains(t, s.out.String(), ": unknown (no_match")
}

// A client that connects and stays silent is served by the echo once the
// detection timeout passes; meanwhile others are served at once.
func TestSilentClientTimesOutToEcho(t *testing.T) {
	// 2 s: generous enough that the HTTP client below, on a loaded machine,
	// still sends its request before its own detection would time out.
	s := start(t, config{DetectTimeout: 2 * time.Second})
	silent, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer silent.Close()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	_, body := get(t, &http.Client{Transport: tr}, "http://"+s.addr+"/while-silent")
	require.Equal(t, "multiplex: GET /while-silent HTTP/1.1 tls=none\n", body)

	require.Eventually(t, func() bool { return strings.Contains(s.out.String(), ": unknown (timeout") }, 30*time.Second, 20*time.Millisecond)
	silent.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(silent, "GET / HTTP/1.1\r\n\r\n") // too late to be HTTP: echoed
	require.NoError(t, err)
	got := make([]byte, len("GET / HTTP/1.1\r\n\r\n"))
	_, err = io.ReadFull(silent, got)
	require.NoError(t, err)
	require.Equal(t, "GET / HTTP/1.1\r\n\r\n", string(got))
}

// Inside TLS, bytes that are not HTTP reach the echo too.
func TestTLSRawEcho(t *testing.T) {
	s := start(t, config{})
	c, err := tls.Dial("tcp", s.addr, s.clientTLS())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(c, "ping inside tls\n")
	require.NoError(t, err)
	got, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ping inside tls\n", got)
	require.Contains(t, s.out.String(), `inside TLS (TLS 1.3, sni="localhost", alpn=""): unknown (no_match)`)
}

func TestCurl(t *testing.T) {
	curl := exampletest.RequireProgram(t, "curl", "curl")
	s := start(t, config{})
	p := port(t, s.addr)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"http1.1", []string{"--http1.1", "http://" + s.addr + "/curl"}, "multiplex: GET /curl HTTP/1.1 tls=none\n"},
		{"h2c-prior-knowledge", []string{"--http2-prior-knowledge", "http://" + s.addr + "/curl"}, "multiplex: GET /curl HTTP/2.0 tls=none\n"},
		{"tls-h2", []string{"-k", "--http2", "--resolve", "localhost:" + p + ":127.0.0.1", "https://localhost:" + p + "/curl"},
			`multiplex: GET /curl HTTP/2.0 tls="TLS 1.3" alpn=h2 sni=localhost` + "\n"},
		{"tls-http1.1", []string{"-k", "--http1.1", "--resolve", "localhost:" + p + ":127.0.0.1", "https://localhost:" + p + "/curl"},
			`multiplex: GET /curl HTTP/1.1 tls="TLS 1.3" alpn=http/1.1 sni=localhost` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"--silent", "--show-error", "--max-time", "30"}, tc.args...)
			out, err := exec.CommandContext(ctx, curl, args...).CombinedOutput()
			require.NoError(t, err, "curl %v: %s", args, out)
			require.Equal(t, tc.want, string(out))
		})
	}
}

// curl uploads 1 MiB to /echo over HTTP/1.1, h2c and TLS h2 and gets it back.
func TestCurlUpload(t *testing.T) {
	curl := exampletest.RequireProgram(t, "curl", "curl")
	s := start(t, config{})
	body := make([]byte, 1<<20)
	_, err := rand.Read(body)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "body")
	require.NoError(t, os.WriteFile(file, body, 0o600))
	p := port(t, s.addr)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"http1.1", []string{"--http1.1", "http://" + s.addr + "/echo"}},
		{"h2c-prior-knowledge", []string{"--http2-prior-knowledge", "http://" + s.addr + "/echo"}},
		{"tls-h2", []string{"-k", "--http2", "--resolve", "localhost:" + p + ":127.0.0.1", "https://localhost:" + p + "/echo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"--silent", "--show-error", "--max-time", "30", "--data-binary", "@" + file}, tc.args...)
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, curl, args...)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			require.NoError(t, err, "curl %v: %s", args, stderr.String())
			require.True(t, bytes.Equal(body, out), "echoed body differs (%d bytes back)", len(out))
		})
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", cfg.Addr)
	require.Equal(t, 10*time.Second, cfg.DetectTimeout)

	cfg, err = parseFlags([]string{"-addr", "127.0.0.1:0", "-detect-timeout", "2s", "-quiet"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, config{Addr: "127.0.0.1:0", DetectTimeout: 2 * time.Second, EchoIdle: 2 * time.Minute, ShutdownGrace: 5 * time.Second, Quiet: true}, cfg)

	_, err = parseFlags([]string{"-h"}, io.Discard)
	require.ErrorIs(t, err, flag.ErrHelp)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-addr", "8080"}, `-addr "8080"`},
		{[]string{"-detect-timeout", "-1s"}, "-detect-timeout must not be negative"},
		{[]string{"-detect-timeout", "0"}, "-detect-timeout must be positive"},
		{[]string{"-tls-cert", "c.pem"}, "-tls-cert and -tls-key go together"},
		{[]string{"-no-such-flag"}, "flag provided but not defined"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		require.ErrorIs(t, err, errUsage, "%v", tc.args)
		require.ErrorContains(t, err, tc.want, "%v", tc.args)
	}
}

func TestListenError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	err = run(context.Background(), config{Addr: l.Addr().String(), DetectTimeout: time.Second}, io.Discard)
	var opErr *net.OpError
	require.True(t, errors.As(err, &opErr), "want a listen error, got %v", err)
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return p
}

// /metrics, on the multiplexed port itself, counts the mux's routing, the
// detections, the HTTP requests and the echo's connections and bytes.
func TestMetrics(t *testing.T) {
	s := start(t, config{})

	c, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(c, "0123456789\n")
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 11))
	require.NoError(t, err)
	require.NoError(t, c.Close())

	cc, err := grpc.NewClient("passthrough:///"+s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := new(wrapperspb.StringValue)
	require.NoError(t, cc.Invoke(ctx, echoMethod, wrapperspb.String("m"), out))
	require.NoError(t, cc.Close())

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	_, body := get(t, client, "http://"+s.addr+"/some/path")
	require.Equal(t, "multiplex: GET /some/path HTTP/1.1 tls=none\n", body)

	want := []string{
		`mux_connections_total{outcome="routed",protocol="HTTP/1"} 1`, // the keep-alive connection carries the scrape too
		`mux_connections_total{outcome="routed",protocol="gRPC"} 1`,
		`mux_connections_total{outcome="routed",protocol="unknown"} 1`,
		`protocol_detect_total{direction="inbound",protocol="gRPC",reason="matched"} 1`,
		`protocol_detect_total{direction="inbound",protocol="unknown",reason="no_match"} 1`,
		`request_total{authority="` + s.addr + `",direction="inbound",route="/*"} 1`,
		`response_total{authority="` + s.addr + `",classification="success",direction="inbound",grpc_status="",route="/*",status_code="200"} 1`,
		`tcp_open_total{direction="inbound",protocol="unknown",tls="false"} 1`,
		`tcp_read_bytes_total{direction="inbound",protocol="unknown",tls="false"} 11`,
		`tcp_write_bytes_total{direction="inbound",protocol="unknown",tls="false"} 11`,
		`tcp_close_total{direction="inbound",errno="",protocol="unknown",tls="false"} 1`,
		// Each of the three connections waited for its first bytes in the mux's Waiter.
		`waiter_connections_total{outcome="ready",waiter="mux"} 3`,
		`waiter_waiting_connections{waiter="mux"} 0`,
	}
	var text string
	require.Eventually(t, func() bool { // the echo counts its close asynchronously
		_, text = get(t, client, "http://"+s.addr+"/metrics")
		for _, w := range want {
			if !strings.Contains(text, w+"\n") {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "want all of %q", want)
}
