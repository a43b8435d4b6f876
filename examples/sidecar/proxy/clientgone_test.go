package proxy

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			io.WriteString(w, "slow "+r.URL.Query().Get("ms"))
		case <-r.Context().Done():
			cancelled <- struct{}{}
		}
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	var evA, evB events
	addr, pA, pB := h1Pair(t, httpBackend(t, &http.Server{Handler: mux, Protocols: &protos}), &evA, &evB)

	// Stays: an answer after six watch periods.
	hc := dialH1(t, addr)
	resp, body := hc.do("GET /slow?ms=300 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "slow 300", body)

	// Half-closes after a pipelined request: both answered.
	hc.send("GET /slow?ms=200 HTTP/1.1\r\nHost: app\r\n\r\nGET /slow?ms=1 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.NoError(t, hc.c.(*net.TCPConn).CloseWrite())
	resp, body = hc.read("GET")
	require.Equal(t, "slow 200", body)
	resp, body = hc.read("GET")
	require.Equal(t, "slow 1", body)
	_, err := hc.br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	hc.c.Close()

	// Leaves: the application's request ends long before its 20 s.
	hc = dialH1(t, addr)
	hc.send("GET /slow?ms=20000 HTTP/1.1\r\nHost: app\r\n\r\n")
	time.Sleep(3 * clientWatch) // in flight at the application
	start := time.Now()
	hc.c.Close()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the application's request goes on after its client left")
	}
	t.Logf("ended at the application %v after the client left", time.Since(start))
	require.Eventually(t, func() bool {
		return pA.Metrics.Snapshot().Value("response_total", "direction", "outbound", "status_code", "499") == 1 &&
			pB.Metrics.Snapshot().Value("response_total", "direction", "inbound", "status_code", "499") == 1
	}, 5*time.Second, 10*time.Millisecond, "both sidecars count the request as the client's 499")
	for _, p := range []*Proxy{pA, pB} {
		s := p.Metrics.Snapshot()
		require.Equal(t, 4.0, s.Value("request_total"), "every request counted once")
		require.Equal(t, 3.0, s.Value("response_total", "status_code", "200"))
	}
}
