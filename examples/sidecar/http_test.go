package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sniffsplice/sniff/examples/internal/exampletest"
	"github.com/sniffsplice/sniff/examples/sidecar/proxy"
	"github.com/sniffsplice/sniff/metrics"
	promcollector "github.com/sniffsplice/sniff/metrics/prometheus"
	"github.com/sniffsplice/sniff/opaque"
)

// Issue 10 through two sidecars on loopback: HTTP served per request, with
// the metrics package's HTTP metrics on both sides.

// httpBackend serves HTTP/1.1 and h2c: "/" greets, "/missing" is 404,
// "/slow" waits, "/ws" is a WebSocket echo, and CONNECT opens a tunnel to
// the host it names (an HTTP proxy as the application).
func httpBackend(t *testing.T) netip.AddrPort {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s over %s from %s", r.URL.Path, r.Proto, r.Header.Get(proxy.ClientIDHeader))
	})
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, "missing")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) {
		ws.PayloadType = websocket.BinaryFrame
		var msg []byte
		for websocket.Message.Receive(ws, &msg) == nil {
			if websocket.Message.Send(ws, msg) != nil {
				return
			}
		}
	}))
	var wg sync.WaitGroup
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			mux.ServeHTTP(w, r)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		brw.Flush()
		wg.Add(2)
		// brw's reader first: it holds what the server read ahead.
		go func() { defer wg.Done(); io.Copy(up, brw); up.(*net.TCPConn).CloseWrite() }()
		go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return l.Addr().(*net.TCPAddr).AddrPort()
}

func snapshots(cli, srv *proxy.Sidecar) (metrics.Snapshot, metrics.Snapshot) {
	return cli.Proxy.Metrics.Snapshot(), srv.Proxy.Metrics.Snapshot()
}

// eventually retries check until it holds (the metrics of a response are
// recorded when its body ends, just after the client has it).
func eventually(t *testing.T, check func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = check(); err == nil {
			return
		}
	}
	t.Fatal(err)
}

func wantCounts(cli, srv *proxy.Sidecar, requests uint64, status int, grpcStatus string, responses uint64) func() error {
	return func() error {
		a, b := snapshots(cli, srv)
		for _, c := range []struct {
			name string
			got  uint64
			want uint64
		}{
			{"outbound requests", requestCount(a, opaque.Outbound), requests},
			{"inbound requests", requestCount(b, opaque.Inbound), requests},
			{fmt.Sprintf("outbound %d/%q responses", status, grpcStatus), responseCount(a, opaque.Outbound, status, grpcStatus), responses},
			{fmt.Sprintf("inbound %d/%q responses", status, grpcStatus), responseCount(b, opaque.Inbound, status, grpcStatus), responses},
		} {
			if c.got != c.want {
				return fmt.Errorf("%s: %d, want %d", c.name, c.got, c.want)
			}
		}
		return nil
	}
}

func TestHTTP1KeepAliveCurl(t *testing.T) {
	curl := exampletest.RequireProgram(t, "curl", "curl")
	addr, cli, srv := pair(t, httpBackend(t))
	base := "http://" + addr
	out := runClient(t, 30*time.Second, curl, "-sS", "--http1.1", "-w", " %{http_code} %{num_connects}\n",
		base+"/a", base+"/b", base+"/missing", base+"/c")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	require.Equal(t, "hello /a over HTTP/1.1 from "+clientID+" 200 1", lines[0])
	require.Equal(t, "hello /b over HTTP/1.1 from "+clientID+" 200 0", lines[1], "keep-alive: no new connection")
	require.Equal(t, "missing 404 0", lines[2])
	require.Equal(t, "hello /c over HTTP/1.1 from "+clientID+" 200 0", lines[3])
	eventually(t, wantCounts(cli, srv, 4, 200, "", 3))
	eventually(t, wantCounts(cli, srv, 4, 404, "", 1))
	a, _ := snapshots(cli, srv)
	require.Equal(t, 1.0, a.Value("tcp_open_total", "direction", "outbound", "protocol", "HTTP/1", "tls", "true"))
}

func TestH2CCurlAndH2load(t *testing.T) {
	curl := exampletest.RequireProgram(t, "curl", "curl")
	h2load := exampletest.RequireProgram(t, "h2load", "nghttp2-client")
	addr, cli, srv := pair(t, httpBackend(t))
	base := "http://" + addr
	// One URL per curl: this curl (7.88) fails a second request on one
	// prior-knowledge connection against Go's own HTTP/2 servers too, without
	// any proxy in between; h2load below multiplexes many.
	for _, p := range []string{"/x", "/y"} {
		out := runClient(t, 30*time.Second, curl, "-sS", "--http2-prior-knowledge", "-w", " %{http_version}\n", base+p)
		require.Equal(t, "hello "+p+" over HTTP/2.0 from "+clientID+" 2\n", out)
	}
	out := runClient(t, 60*time.Second, h2load, "-n", "200", "-c", "4", "-m", "8", base+"/load")
	require.Contains(t, out, "200 succeeded, 0 failed, 0 errored")
	require.Contains(t, out, "status codes: 200 2xx")
	eventually(t, wantCounts(cli, srv, 202, 200, "", 202))
}

func TestGRPCStatusCounted(t *testing.T) {
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("known", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	addr, cli, srv := pair(t, l.Addr().(*net.TCPAddr).AddrPort())

	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "known"})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	eventually(t, wantCounts(cli, srv, 2, 200, "0", 1))
	eventually(t, wantCounts(cli, srv, 2, 200, "5", 1))
	// A non-OK gRPC status is a failure in Linkerd's classification.
	b := srv.Proxy.Metrics.Snapshot()
	require.Equal(t, 1.0, b.Value("response_total", "grpc_status", "5", "classification", "failure"))
	require.Zero(t, b.Value("response_total", "grpc_status", "5", "classification", "success"))
}

func TestWebSocketMiB(t *testing.T) {
	addr, cli, srv := pair(t, httpBackend(t))
	cfg, err := websocket.NewConfig("ws://"+addr+"/ws", "http://"+addr)
	require.NoError(t, err)
	ws, err := websocket.DialConfig(cfg)
	require.NoError(t, err)
	defer ws.Close()
	ws.PayloadType = websocket.BinaryFrame
	ws.SetDeadline(time.Now().Add(60 * time.Second))
	msg := make([]byte, 1<<20)
	rand.Read(msg)
	for range 2 {
		require.NoError(t, websocket.Message.Send(ws, msg))
		var got []byte
		require.NoError(t, websocket.Message.Receive(ws, &got))
		require.True(t, bytes.Equal(msg, got), "1 MiB echoed intact")
	}
	ws.Close()
	// The upgrade was counted as one request with a 101 on both sidecars.
	eventually(t, wantCounts(cli, srv, 1, http.StatusSwitchingProtocols, "", 1))
	a, _ := snapshots(cli, srv)
	eventually(t, func() error {
		a, _ = snapshots(cli, srv)
		conn := []string{"direction", "outbound", "protocol", "HTTP/1", "tls", "true"}
		read, written := a.Value("tcp_read_bytes_total", conn...), a.Value("tcp_write_bytes_total", conn...)
		if read < 2<<20 || written < 2<<20 {
			return fmt.Errorf("outbound bytes %v/%v, want at least 2 MiB each way", read, written)
		}
		return nil
	})
}

func TestConnectTunnelTLS(t *testing.T) {
	// The tunnel's far end: a TLS server on loopback, reached through the
	// application (an HTTP CONNECT proxy) behind the two sidecars.
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls end to end: %s", r.URL.Path)
	}))
	defer ts.Close()
	addr, cli, srv := pair(t, httpBackend(t))

	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	target := ts.Listener.Addr().String()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	// RFC 9110 9.3.6: no Transfer-Encoding or Content-Length on a 2xx to CONNECT.
	require.Empty(t, resp.TransferEncoding)
	require.Empty(t, resp.Header.Get("Content-Length"))
	require.Zero(t, br.Buffered())

	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "example.com"})
	require.NoError(t, tc.Handshake())
	fmt.Fprintf(tc, "GET /inside HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(tc), nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "tls end to end: /inside", string(body))
	tc.Close()
	eventually(t, wantCounts(cli, srv, 1, 200, "", 1))
}

func TestBadHTTP(t *testing.T) {
	dst := httpBackend(t)
	addr, cli, srv := pair(t, dst, "-response-timeout", "500ms", "-header-timeout", "1s")
	// exchange writes each request on c and reads its answer: an HTTP
	// response, never a hang (the deadline) or a silent close (an error).
	exchange := func(c net.Conn, reqs ...string) []string {
		t.Helper()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		var got []string
		for _, req := range reqs {
			_, err := io.WriteString(c, req)
			require.NoError(t, err)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err, "an HTTP answer to %q, never a silent close", req)
			_, err = io.Copy(io.Discard, resp.Body)
			require.NoError(t, err)
			resp.Body.Close()
			got = append(got, resp.Status)
		}
		return got
	}
	raw := func(req string) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		return exchange(c, req)[0]
	}
	// Answered by net/http in sidecar A before any handler runs.
	require.Equal(t, "400 Bad Request", raw("GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"))
	require.Equal(t, "431 Request Header Fields Too Large",
		raw("GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 100<<10)+"\r\n\r\n"))
	require.Equal(t, "417 Expectation Failed", raw("POST / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx"))
	require.Equal(t, "501 Not Implemented", raw("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"))
	// Headers that stop arriving: net/http would close without a word.
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	start := time.Now()
	require.Equal(t, []string{"408 Request Timeout"}, exchange(c, "GET / HTTP/1.1\r\nHost: x\r\n"))
	require.GreaterOrEqual(t, time.Since(start), time.Second, "-header-timeout")
	n, err := c.Read(make([]byte, 1))
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF, "then a clean close")
	c.Close()
	// A bad request after a good one on a keep-alive connection: the 200
	// (written while the handler owned the connection) is the middleware's,
	// the 400 net/http's.
	c, err = net.Dial("tcp", addr)
	require.NoError(t, err)
	require.Equal(t, []string{"200 OK", "400 Bad Request"},
		exchange(c, "GET /ka HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\nHost x\r\n\r\n"))
	c.Close()
	// Answered by the proxies' handlers.
	require.Equal(t, "504 Gateway Timeout", raw("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"))

	// Every answer is counted exactly once on sidecar A, net/http's own as
	// failures with no authority; none of the refused requests reached B.
	refused := map[int]uint64{400: 2, 431: 1, 417: 1, 501: 1, 408: 1}
	eventually(t, func() error {
		a, b := snapshots(cli, srv)
		if got := requestCount(a, opaque.Outbound); got != 8 {
			return fmt.Errorf("outbound requests %d, want 8", got)
		}
		for status, want := range map[int]uint64{400: 2, 431: 1, 417: 1, 501: 1, 408: 1, 200: 1, 504: 1} {
			if got := responseCount(a, opaque.Outbound, status, ""); got != want {
				return fmt.Errorf("outbound %d responses %d, want %d", status, got, want)
			}
		}
		if got := requestCount(b, opaque.Inbound); got != 2 { // /ka and /slow
			return fmt.Errorf("inbound requests %d, want 2", got)
		}
		return nil
	})
	a, b := snapshots(cli, srv)
	require.Equal(t, 8.0, a.Value("response_total"), "no response counted twice")
	for status, n := range refused {
		code := strconv.Itoa(status)
		require.Equal(t, float64(n), a.Value("response_total", "status_code", code, "classification", "failure", "authority", ""), code)
		require.Positive(t, a.Histogram("response_latency_seconds", "status_code", code).Sum, "latency from the request's first byte: %s", code)
	}
	require.Equal(t, 1.0, a.Value("response_total", "status_code", "200", "classification", "success"))
	for status := range refused {
		require.Zero(t, responseCount(b, opaque.Inbound, status, ""), "B never saw the refused request")
	}
	problems, err := promtestutil.CollectAndLint(promcollector.NewCollector(cli.Proxy.Metrics, promcollector.Options{}))
	require.NoError(t, err)
	require.Empty(t, problems)

	// An application port with nothing listening: 502 from the sidecars.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gone := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	addr, cli, _ = pair(t, gone)
	require.Equal(t, "502 Bad Gateway", raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	eventually(t, func() error {
		a := cli.Proxy.Metrics.Snapshot()
		if got := responseCount(a, opaque.Outbound, 502, ""); got != 1 {
			return fmt.Errorf("outbound 502 responses %d, want 1", got)
		}
		return nil
	})
}

// TestPeerConnectionReused: many client connections, one request each; the
// requests share A's pooled mutual-TLS connections to B.
func TestPeerConnectionReused(t *testing.T) {
	addr, cli, _ := pair(t, httpBackend(t))
	const n = 10
	for i := range n {
		tr := &http.Transport{}
		resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("http://%s/r%d", addr, i))
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
	}
	eventually(t, func() error {
		a := cli.Proxy.Metrics.Snapshot()
		if got := requestCount(a, opaque.Outbound); got != n {
			return fmt.Errorf("requests %d", got)
		}
		return nil
	})
	a := cli.Proxy.Metrics.Snapshot()
	http1Headers := a.Value("transport_header_written_total", "session_protocol", "HTTP/1")
	t.Logf("%d client connections, %v pooled connections to the peer", n, http1Headers)
	require.GreaterOrEqual(t, http1Headers, 1.0)
	require.Less(t, http1Headers, float64(n), "the connection to the peer is reused")
}
