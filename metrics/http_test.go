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
	srv := httptest.NewServer(reg.HTTPHandler(statusHandler(), metrics.HTTPOptions{Direction: metrics.Inbound}))
	defer srv.Close()
	client := &http.Client{Transport: reg.RoundTripper(srv.Client().Transport, metrics.HTTPOptions{Direction: metrics.Outbound})}
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
		var n uint64
		for _, r := range reg.Snapshot().Responses {
			if r.Direction == metrics.Inbound {
				n += r.Count
			}
		}
		return n == 7
	}, 10*time.Second, time.Millisecond, "%+v", reg.Snapshot().Responses)

	snap := reg.Snapshot()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, dir := range []metrics.Direction{metrics.Inbound, metrics.Outbound} {
		assert.Equal(t, uint64(7), snap.RequestCount(dir), dir)
		assert.Equal(t, uint64(3), snap.ResponseCount(dir, 200, ""), dir)
		assert.Equal(t, uint64(1), snap.ResponseCount(dir, 202, ""), dir)
		assert.Equal(t, uint64(1), snap.ResponseCount(dir, 404, ""), dir)
		assert.Equal(t, uint64(1), snap.ResponseCount(dir, 500, ""), dir)
		assert.Equal(t, uint64(1), snap.ResponseCount(dir, 0, ""), "%s: the aborted response", dir)
	}
	for _, r := range snap.Responses {
		assert.Equal(t, host, r.Authority)
		wantClass := "success"
		if r.StatusCode == 0 || r.StatusCode >= 500 {
			wantClass = "failure"
		}
		assert.Equal(t, wantClass, r.Classification, "%+v", r)
		assert.Equal(t, r.Count, r.Latency.Count)
	}
}

func TestHTTPAuthorityBounds(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	capped := reg.HTTPHandler(statusHandler(), metrics.HTTPOptions{MaxAuthorities: 2})
	allowed := reg.HTTPHandler(statusHandler(), metrics.HTTPOptions{Direction: metrics.Outbound,
		Authorities: []string{"api.example.test", "web.example.test:8080"},
		Route:       func(r *http.Request) string { return r.URL.Path }, MaxRoutes: 1})
	for _, host := range []string{"A.example.test", "a.example.test", "b.example.test", "c.example.test", "d.example.test"} {
		req := httptest.NewRequest("GET", "http://"+host+"/ok", nil)
		capped.ServeHTTP(httptest.NewRecorder(), req)
	}
	for _, u := range []string{"http://API.example.test:9999/ok", "http://web.example.test:8080/missing", "http://evil.test/ok"} {
		allowed.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", u, nil))
	}
	snap := reg.Snapshot()
	assert.Equal(t, []metrics.RequestSample{
		{Direction: metrics.Inbound, Authority: "a.example.test", Count: 2},
		{Direction: metrics.Inbound, Authority: "b.example.test", Count: 1},
		{Direction: metrics.Inbound, Authority: metrics.Other, Count: 2},
		{Direction: metrics.Outbound, Authority: "api.example.test", Route: "/ok", Count: 1},
		{Direction: metrics.Outbound, Authority: metrics.Other, Route: "/ok", Count: 1},
		{Direction: metrics.Outbound, Authority: "web.example.test:8080", Route: metrics.Other, Count: 1},
	}, snap.Requests)
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
	require.Eventually(t, func() bool { return reg.Snapshot().ResponseCount(metrics.Inbound, 0, "") == 1 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, "success", reg.Snapshot().Responses[0].Classification, "a hijacked connection is not a failure")
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
	client := &http.Client{Transport: reg.RoundTripper(tr, metrics.HTTPOptions{Direction: metrics.Outbound})}
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

	for _, dir := range []metrics.Direction{metrics.Inbound, metrics.Outbound} {
		require.Eventually(t, func() bool { return reg.Snapshot().RequestCount(dir) == 3 }, 10*time.Second, time.Millisecond)
		snap := reg.Snapshot()
		assert.Equal(t, uint64(1), snap.ResponseCount(dir, 200, "0"), dir)
		assert.Equal(t, uint64(2), snap.ResponseCount(dir, 200, "5"), dir)
	}
	for _, r := range reg.Snapshot().Responses {
		assert.Equal(t, r.GRPCStatus != "0", r.Classification == "failure", "%+v", r)
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
	client := &http.Client{Transport: reg.RoundTripper(tr, metrics.HTTPOptions{Direction: metrics.Outbound})}
	_, err = client.Get("http://" + addr + "/")
	require.Error(t, err)
	snap := reg.Snapshot()
	require.Len(t, snap.Responses, 1)
	assert.Equal(t, 0, snap.Responses[0].StatusCode)
	assert.Equal(t, "failure", snap.Responses[0].Classification)
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
	reg.ObserveHTTPError(metrics.Outbound, http.StatusBadRequest, 2*time.Millisecond)
	reg.ObserveHTTPError(metrics.Outbound, http.StatusBadRequest, 4*time.Millisecond)
	reg.ObserveHTTPError(metrics.Outbound, http.StatusRequestHeaderFieldsTooLarge, 0)
	reg.ObserveHTTPError(metrics.Direction(9), 1000, time.Millisecond) // inbound, no status
	reg.ObserveHTTPError(metrics.Inbound, 42, time.Millisecond)        // no status

	// The same 400 answered by a handler through the middleware.
	h := reg.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
	}), metrics.HTTPOptions{Direction: metrics.Outbound})
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://svc.test/", nil))

	snap := reg.Snapshot()
	assert.Equal(t, uint64(4), snap.RequestCount(metrics.Outbound))
	assert.Equal(t, uint64(2), snap.RequestCount(metrics.Inbound))
	type row struct {
		dir       metrics.Direction
		authority string
		status    int
		class     string
		count     uint64
	}
	var got []row
	for _, r := range snap.Responses {
		assert.Equal(t, "", r.Route)
		assert.Equal(t, "", r.GRPCStatus)
		assert.Equal(t, r.Count, r.Latency.Count)
		got = append(got, row{r.Direction, r.Authority, r.StatusCode, r.Classification, r.Count})
		if r.Direction == metrics.Outbound && r.StatusCode == http.StatusBadRequest && r.Authority == "" {
			assert.InDelta(t, 0.006, r.Latency.Sum, 1e-9)
		}
	}
	assert.ElementsMatch(t, []row{
		{metrics.Inbound, "", 0, "failure", 2},
		{metrics.Outbound, "", http.StatusBadRequest, "failure", 2},
		{metrics.Outbound, "", http.StatusRequestHeaderFieldsTooLarge, "failure", 1},
		{metrics.Outbound, "svc.test", http.StatusBadRequest, "success", 1},
	}, got)

	var nilReg *metrics.Registry
	nilReg.ObserveHTTPError(metrics.Inbound, http.StatusBadRequest, 0) // no panic, nothing to count
}
