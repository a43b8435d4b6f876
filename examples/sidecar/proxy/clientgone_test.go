package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/opaque"
)

// TestDirectClientGone: a client that leaves while its request waits for a
// slow upstream ends the request at the application too (as net/http's
// server cancels a request whose connection closes), within a few
// clientWatch periods, through both sidecars; each counts it as 499. A
// client that stays, or that half-closes after pipelining its next request,
// gets its answers.
func TestDirectClientGone(t *testing.T) {
	restore := clientWatch
	t.Cleanup(func() { clientWatch = restore }) // after the sidecars have closed
	clientWatch = 50 * time.Millisecond
	cancelled := make(chan struct{}, 4)
	app := slowBackend(t, cancelled)
	var evA, evB events
	addr, pA, pB := h1Pair(t, app, &evA, &evB)

	// Stays: an answer after six watch periods.
	hc := dialH1(t, addr)
	resp, body := hc.do("GET /slow?ms=300 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "slow 300", body)

	// Half-closes after a pipelined request: both answered. (The first of
	// them is not watched, on a pooled connection whose last response's
	// deadline has passed meanwhile: it must not time out.)
	time.Sleep(3 * clientWatch)
	hc.send("GET /slow?ms=200 HTTP/1.1\r\nHost: app\r\n\r\nGET /slow?ms=1 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.NoError(t, hc.c.(*net.TCPConn).CloseWrite())
	resp, body = hc.read("GET")
	require.Equal(t, "slow 200", body)
	resp, body = hc.read("GET")
	require.Equal(t, "slow 1", body)
	_, err := hc.br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	hc.c.Close()

	// Sends its next request while the first one's answer is awaited: the
	// bytes waiting in its socket (not read yet) say it is still there, on A
	// (plain) and on B (TLS from a peer): both answered.
	hc = dialH1(t, addr)
	hc.send("GET /slow?ms=300 HTTP/1.1\r\nHost: app\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	hc.send("GET /slow?ms=1 HTTP/1.1\r\nHost: app\r\n\r\n")
	_, body = hc.read("GET")
	require.Equal(t, "slow 300", body)
	_, body = hc.read("GET")
	require.Equal(t, "slow 1", body)
	hc.c.Close()
	peer, err := pA.Peers(app)
	require.NoError(t, err)
	tc, _, err := pA.dialMesh(context.Background(), peer, opaque.Header{Port: app.Port(), SessionProtocol: opaque.SessionHTTP1})
	require.NoError(t, err)
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	_, err = io.WriteString(tc, "GET /slow?ms=300 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	_, err = io.WriteString(tc, "GET /slow?ms=1 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.NoError(t, err)
	tbr := bufio.NewReader(tc)
	for _, want := range []string{"slow 300", "slow 1"} {
		resp, err := http.ReadResponse(tbr, nil)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, want, string(b), "B's client (TLS) answered")
	}
	tc.Close()

	// Leaves: the application's request ends long before its 20 s.
	hc = dialH1(t, addr)
	hc.send("GET /slow?ms=20000 HTTP/1.1\r\nHost: app\r\n\r\n")
	time.Sleep(3 * clientWatch) // in flight at the application
	leave(t, hc, cancelled, "request")
	require.Eventually(t, func() bool {
		return pA.Metrics.Snapshot().Value("response_total", "direction", "outbound", "status_code", "499") == 1 &&
			pB.Metrics.Snapshot().Value("response_total", "direction", "inbound", "status_code", "499") == 1
	}, 5*time.Second, 10*time.Millisecond, "both sidecars count the request as the client's 499")

	// Leaves in the middle of a streamed answer (its head and first chunk
	// read): the application's request ends too.
	hc = dialH1(t, addr)
	hc.send("GET /stream HTTP/1.1\r\nHost: app\r\n\r\n")
	resp, err = http.ReadResponse(hc.br, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	first := make([]byte, len("first;"))
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	require.Equal(t, "first;", string(first))
	leave(t, hc, cancelled, "stream")

	for _, c := range []struct {
		p    *Proxy
		reqs float64 // B also served the two sent to it directly
	}{{pA, 7}, {pB, 9}} {
		// The stream's request is counted when its handler returns, after the application's end.
		require.Eventually(t, func() bool { return c.p.Metrics.Snapshot().Value("response_total") == c.reqs }, 5*time.Second, 10*time.Millisecond)
		s := c.p.Metrics.Snapshot()
		require.Equal(t, c.reqs, s.Value("request_total"), "every request counted once")
		require.Equal(t, c.reqs-1, s.Value("response_total", "status_code", "200"), "all but the one that left (the stream's answer had begun)")
	}
}

// leave closes the client's connection and waits for the application's
// request (what) to end.
func leave(t *testing.T, hc *h1Client, cancelled <-chan struct{}, what string) {
	t.Helper()
	start := time.Now()
	hc.c.Close()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatalf("the application's %s goes on after its client left", what)
	}
	t.Logf("the %s ended at the application %v after the client left", what, time.Since(start))
}

// slowBackend is an application whose /slow?ms=N answers after N ms and
// whose /stream?ms=N sends "first;", then "last" after N ms (20 s when not
// given); a request whose context ends first is reported on cancelled.
func slowBackend(t *testing.T, cancelled chan<- struct{}) netip.AddrPort {
	mux := http.NewServeMux()
	wait := func(r *http.Request) bool {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil {
			ms = 20000
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return true
		case <-r.Context().Done():
			cancelled <- struct{}{}
			return false
		}
	}
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		if wait(r) {
			io.WriteString(w, "slow "+r.URL.Query().Get("ms"))
		}
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first;")
		w.(http.Flusher).Flush()
		if wait(r) {
			io.WriteString(w, "last")
		}
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	return httpBackend(t, &http.Server{Handler: mux, Protocols: &protos})
}

// TestDirectResponseTimeout: ResponseTimeout bounds the wait for a response
// head (504), not a body that streams after it.
func TestDirectResponseTimeout(t *testing.T) {
	cancelled := make(chan struct{}, 4)
	var evA, evB events
	addr, pA, _ := h1Pair(t, slowBackend(t, cancelled), &evA, &evB, func(p *Proxy) { p.ResponseTimeout = 300 * time.Millisecond })
	hc := dialH1(t, addr)
	resp, body := hc.do("GET /stream?ms=900 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "first;last", body, "the body streams past ResponseTimeout")
	resp, _ = hc.do("GET /slow?ms=900 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	require.Eventually(t, func() bool {
		s := pA.Metrics.Snapshot()
		return s.Value("response_total", "status_code", "504") == 1 && s.Value("response_total", "status_code", "200") == 1
	}, 5*time.Second, 10*time.Millisecond)
}

// TestDirectInformationalToGoneClient: when the client has reset its
// connection before an informational answer (103) is written to it, sidecar
// A closes its upstream connection instead of leaving it open: sidecar B sees
// its inbound connection end (its event) soon after.
func TestDirectInformationalToGoneClient(t *testing.T) {
	restore := clientWatch
	t.Cleanup(func() { clientWatch = restore }) // after the sidecars have closed
	clientWatch = time.Hour                     // the 103's write, not the watch, finds the client gone
	mux := http.NewServeMux()
	mux.HandleFunc("/hints", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond) // the client has reset its connection by now
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final")
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	var evA, evB events
	addr, _, _ := h1Pair(t, httpBackend(t, &http.Server{Handler: mux, Protocols: &protos}), &evA, &evB, noEarlyRace)
	hc := dialH1(t, addr)
	hc.send("GET /hints HTTP/1.1\r\nHost: app\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, hc.c.(*net.TCPConn).SetLinger(0))
	hc.c.Close() // a reset
	require.Eventually(t, func() bool {
		evB.mu.Lock()
		defer evB.mu.Unlock()
		return len(evB.evs) == 1
	}, 5*time.Second, 10*time.Millisecond, "B's inbound connection from A ends: A closed it")
}
