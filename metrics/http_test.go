package metrics_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
)

func statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	mux.HandleFunc("/implicit", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/boom", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) })
	mux.HandleFunc("/early-hints", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		io.WriteString(w, "b")
	})
	return mux // unknown paths: 404
}

func TestHTTPHandlerAndRoundTripper(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	srv := httptest.NewServer(reg.HTTPHandler(statusHandler(), metrics.HTTPOptions{Direction: opaque.Inbound}))
	defer srv.Close()
	client := &http.Client{Transport: reg.RoundTripper(srv.Client().Transport, metrics.HTTPOptions{Direction: opaque.Outbound})}
	defer client.CloseIdleConnections()

	want := map[string]int{"/ok": 200, "/implicit": 200, "/boom": 500, "/missing": 404, "/early-hints": 202, "/flush": 200}
	for path, code := range want {
		resp, err := client.Get(srv.URL + path)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, code, resp.StatusCode, path)
	}
	// POST: the transport would retry an idempotent GET on a reused
	// connection, and the server would see the request twice.
	_, err := client.Post(srv.URL+"/panic", "text/plain", strings.NewReader("x"))
	require.Error(t, err, "the server aborts the response")

	// The handler's counts are recorded when it returns, after the client
	// has its response: wait for them.
	require.Eventually(t, func() bool {
		return reg.Snapshot().Value("response_total", "direction", "inbound") == 7
	}, 10*time.Second, time.Millisecond, "%v", metrics.Rows(reg.Snapshot(), "response_total"))

	snap := reg.Snapshot()
	host := strings.TrimPrefix(srv.URL, "http://")
	var rows []string
	for _, dir := range []string{"inbound", "outbound"} {
		assert.Equal(t, 7.0, snap.Value("request_total", "direction", dir), dir)
		assert.Equal(t, 7.0, snap.Value("response_latency_seconds", "direction", dir), "one latency per response")
		// Labels: direction, authority, route, classification, status_code, grpc_status.
		rows = append(rows,
			dir+" "+host+` "" failure "" "" = 1`, // the aborted response
			dir+" "+host+` "" failure 500 "" = 1`,
			dir+" "+host+` "" success 200 "" = 3`,
			dir+" "+host+` "" success 202 "" = 1`,
			dir+" "+host+` "" success 404 "" = 1`)
	}
	assert.Equal(t, rows, metrics.Rows(snap, "response_total"))
}

func TestHTTPAuthorityBounds(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	capped := reg.HTTPHandler(statusHandler(), metrics.HTTPOptions{MaxAuthorities: 2})
	allowed := reg.HTTPHandler(statusHandler(), metrics.HTTPOptions{Direction: opaque.Outbound,
		Authorities: []string{"api.example.test", "web.example.test:8080"},
		Route:       func(r *http.Request) string { return r.URL.Path }, MaxRoutes: 1})
	for _, host := range []string{"A.example.test", "a.example.test", "b.example.test", "c.example.test", "d.example.test"} {
		req := httptest.NewRequest("GET", "http://"+host+"/ok", nil)
		capped.ServeHTTP(httptest.NewRecorder(), req)
	}
	for _, u := range []string{"http://API.example.test:9999/ok", "http://web.example.test:8080/missing", "http://evil.test/ok"} {
		allowed.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", u, nil))
	}
	assert.Equal(t, []string{
		`inbound a.example.test "" = 2`,
		`inbound b.example.test "" = 1`,
		`inbound other "" = 2`,
		"outbound api.example.test /ok = 1",
		"outbound other /ok = 1",
		"outbound web.example.test:8080 other = 1",
	}, metrics.Rows(reg.Snapshot(), "request_total"))
}

func TestHTTPHijack(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	srv := httptest.NewServer(reg.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo until the client half-closes
	}), metrics.HTTPOptions{}))
	defer srv.Close()

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 101, resp.StatusCode)
	io.WriteString(c, "ping")
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	rest, err := io.ReadAll(br)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(rest))
	require.Eventually(t, func() bool { return reg.Snapshot().Value("response_total") == 1 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, 1.0, reg.Snapshot().Value("response_total", "classification", "success", "status_code", ""),
		"a hijacked connection (no status written) is not a failure")
}

// grpcShaped answers like a gRPC server for the health service without
// grpc-go (which the interop module's tests drive): grpc-status 0 for the
// service "", 5 (NotFound) for "missing", in the trailers of a 200.
func grpcShaped() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		code := "0"
		if bytes.Contains(body, []byte("missing")) {
			code = "5"
		}
		w.Header().Set("Grpc-Status", code)
	})
}

// TestGRPCStatusBothSides: a gRPC-shaped call over h2c through the
// RoundTripper to the Handler; both read grpc-status from the trailers and
// classify a non-zero status as a failure.
func TestGRPCStatusBothSides(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	addr := testnet.ServeHTTP(t, reg.HTTPHandler(grpcShaped(), metrics.HTTPOptions{
		Route: func(r *http.Request) string { return r.URL.Path },
	}))
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: reg.RoundTripper(tr, metrics.HTTPOptions{Direction: opaque.Outbound})}
	call := func(service string) string {
		req, err := http.NewRequest("POST", "http://"+addr+"/grpc.health.v1.Health/Check", strings.NewReader("\x00\x00\x00\x00\x00"+service))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, 200, resp.StatusCode)
		return resp.Trailer.Get("Grpc-Status")
	}
	require.Equal(t, "0", call(""))
	require.Equal(t, "5", call("missing"))
	require.Equal(t, "5", call("missing"))

	for _, dir := range []string{"inbound", "outbound"} {
		require.Eventually(t, func() bool {
			return reg.Snapshot().Value("response_total", "direction", dir) == 3
		}, 10*time.Second, time.Millisecond)
		snap := reg.Snapshot()
		assert.Equal(t, 1.0, snap.Value("response_total", "direction", dir, "status_code", "200", "grpc_status", "0",
			"classification", "success"), dir)
		assert.Equal(t, 2.0, snap.Value("response_total", "direction", dir, "status_code", "200", "grpc_status", "5",
			"classification", "failure"), dir)
	}
}

func TestRoundTripperTransportError(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: reg.RoundTripper(tr, metrics.HTTPOptions{Direction: opaque.Outbound})}
	_, err = client.Get("http://" + addr + "/")
	require.Error(t, err)
	assert.Equal(t, []string{`outbound 127.0.0.1:` + addr[strings.LastIndexByte(addr, ':')+1:] + ` "" failure "" "" = 1`},
		metrics.Rows(reg.Snapshot(), "response_total"))
}

func TestNilRegistryHTTP(t *testing.T) {
	var reg *metrics.Registry
	h := statusHandler()
	assert.Equal(t, h, reg.HTTPHandler(h, metrics.HTTPOptions{}))
	assert.Equal(t, http.DefaultTransport, reg.RoundTripper(nil, metrics.HTTPOptions{}))
}

// TestObserveHTTPError: a request net/http refused before any handler is
// one request and one failed response with its status, no authority, route
// or grpc-status, next to the same status from a handler (a success).
func TestObserveHTTPError(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	reg.ObserveHTTPError(opaque.Outbound, http.StatusBadRequest, 2*time.Millisecond)
	reg.ObserveHTTPError(opaque.Outbound, http.StatusBadRequest, 4*time.Millisecond)
	reg.ObserveHTTPError(opaque.Outbound, http.StatusRequestHeaderFieldsTooLarge, 0)
	reg.ObserveHTTPError(opaque.Direction(9), 1000, time.Millisecond) // inbound, no status
	reg.ObserveHTTPError(opaque.Inbound, 42, time.Millisecond)        // no status

	// The same 400 answered by a handler through the middleware.
	h := reg.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
	}), metrics.HTTPOptions{Direction: opaque.Outbound})
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://svc.test/", nil))

	snap := reg.Snapshot()
	assert.Equal(t, 4.0, snap.Value("request_total", "direction", "outbound"))
	assert.Equal(t, 2.0, snap.Value("request_total", "direction", "inbound"))
	// Labels: direction, authority, route, classification, status_code, grpc_status.
	assert.Equal(t, []string{
		`inbound "" "" failure "" "" = 2`,
		`outbound "" "" failure 400 "" = 2`,
		`outbound "" "" failure 431 "" = 1`,
		`outbound svc.test "" success 400 "" = 1`,
	}, metrics.Rows(snap, "response_total"))
	assert.Equal(t, metrics.Rows(snap, "response_total"), metrics.Rows(snap, "response_latency_seconds"),
		"one latency per response")
	lat := snap.Histogram("response_latency_seconds", "direction", "outbound", "authority", "", "status_code", "400")
	assert.InDelta(t, 0.006, lat.Sum, 1e-9)

	var nilReg *metrics.Registry
	nilReg.ObserveHTTPError(opaque.Inbound, http.StatusBadRequest, 0) // no panic, nothing to count
}
