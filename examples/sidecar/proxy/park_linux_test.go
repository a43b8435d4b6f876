package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/sniffsplice/sniff/opaque"
)

// TestInboundTLSParks: sidecar B parks an idle connection from A's pool
// (TLS) in its Waiter too, and serves it again when A reuses it; and a TLS
// connection is parked only after a read found nothing, so that a request
// crypto/tls has already read from the socket is served at once, not left
// behind in its buffer: two requests arriving in one segment as two TLS
// records are both answered.
func TestInboundTLSParks(t *testing.T) {
	restoreLinger, restoreMax := h1Linger, h1MaxLingering
	t.Cleanup(func() { h1Linger, h1MaxLingering = restoreLinger, restoreMax })
	// No room to linger: every idle connection parks at once, after a read
	// that times out at once.
	h1Linger, h1MaxLingering = time.Minute, 0
	var evA, evB events
	backend := h1Backend(t)
	addr, pA, pB := h1Pair(t, backend, &evA, &evB, noEarlyRace)
	hc := dialH1(t, addr)
	resp, _ := hc.do("GET /1 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	require.Eventually(t, func() bool { return pB.http.parks.Load() == 1 }, 5*time.Second, 5*time.Millisecond, "B parks A's pooled connection")
	resp, body := hc.do("GET /2 HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, body, "GET /2")
	require.Eventually(t, func() bool { return pB.http.parks.Load() == 2 }, 5*time.Second, 5*time.Millisecond, "resumed, then parked again")
	evB.mu.Lock()
	evs := append([]Event(nil), evB.evs...)
	evB.mu.Unlock()
	require.Empty(t, evs, "the pooled connection was reused, not closed")

	peer, err := pA.Peers(backend)
	require.NoError(t, err)
	tc, _, err := pA.dialMesh(context.Background(), peer, opaque.Header{Port: backend.Port(), SessionProtocol: opaque.SessionHTTP1})
	require.NoError(t, err)
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	raw, err := tc.NetConn().(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	cork := func(on int) {
		require.NoError(t, raw.Control(func(fd uintptr) {
			require.NoError(t, syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, on))
		}))
	}
	cork(1)
	for _, p := range []string{"/a", "/b"} {
		_, err := tc.Write([]byte("GET " + p + " HTTP/1.1\r\nHost: app\r\n\r\n")) // one TLS record each
		require.NoError(t, err)
	}
	cork(0)
	br := bufio.NewReader(tc)
	for _, p := range []string{"/a", "/b"} {
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err, "the answer to %s", p)
		require.Equal(t, 200, resp.StatusCode)
		resp.Body.Close()
	}
}

// TestParkedApartFromSilent: idle keep-alive connections wait apart from the
// connections waiting for their first bytes: a flood of silent connections
// past MaxWaiting sheds silent ones, not a parked client, whose next request
// on the same connection is answered.
func TestParkedApartFromSilent(t *testing.T) {
	restoreLinger, restoreMax := h1Linger, h1MaxLingering
	t.Cleanup(func() { h1Linger, h1MaxLingering = restoreLinger, restoreMax })
	h1Linger, h1MaxLingering = time.Minute, 0 // every idle connection parks at once
	var evA, evB events
	const maxWaiting = 4
	addr, pA, _ := h1Pair(t, h1Backend(t), &evA, &evB, func(p *Proxy) { p.MaxWaiting, p.MaxIdle = maxWaiting, 64 })
	var clients []*h1Client
	for i := range maxWaiting {
		hc := dialH1(t, addr)
		resp, _ := hc.do(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: app\r\n\r\n", i))
		require.Equal(t, 200, resp.StatusCode)
		clients = append(clients, hc)
	}
	require.Eventually(t, func() bool { return pA.http.parks.Load() == maxWaiting }, 5*time.Second, 5*time.Millisecond, "every client parked")
	// With one Waiter for both, the parked clients are the oldest waiting
	// connections: the first silent one past MaxWaiting would shed one.
	for range 2 * maxWaiting {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
	}
	// The listener hands connections to the Waiter in the order it accepts
	// them: once a client dialled after the flood is answered, the whole
	// flood is waiting.
	resp, _ := dialH1(t, addr).do("GET /after-the-flood HTTP/1.1\r\nHost: app\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	for i, hc := range clients {
		resp, body := hc.do(fmt.Sprintf("GET /again%d HTTP/1.1\r\nHost: app\r\n\r\n", i))
		require.Equal(t, 200, resp.StatusCode, "parked client %d after the flood", i)
		require.Contains(t, body, fmt.Sprintf("GET /again%d", i))
	}
}

// TestParkedDetached: a parked plain TCP client whose wait is detached (the
// Waiter keeps its descriptor alone) is served again on the new connection
// the Waiter makes of its socket, twice over, and its event counts every
// byte of the connection's life.
func TestParkedDetached(t *testing.T) {
	restoreLinger, restoreMax := h1Linger, h1MaxLingering
	t.Cleanup(func() { h1Linger, h1MaxLingering = restoreLinger, restoreMax })
	h1Linger, h1MaxLingering = time.Minute, 0 // every idle connection parks at once
	var evA, evB events
	addr, pA, pB := h1Pair(t, h1Backend(t), &evA, &evB, noEarlyRace, func(p *Proxy) { p.IdleDetachAfter = -1 })
	hc := dialH1(t, addr)
	for i := range 3 {
		resp, body := hc.do(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: app\r\n\r\n", i))
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, body, fmt.Sprintf("GET /%d", i))
		// Within less than the default DetachAfter: IdleDetachAfter is what detached it.
		require.Eventually(t, func() bool { return pA.WaitStats().Idle.Detached == uint64(i+1) }, detect.DefaultDetachAfter/2, 5*time.Millisecond,
			"A's client connection detached (%d)", i+1)
	}
	hc.c.Close()
	ev := evA.wait(t, 1)[0]
	require.NoError(t, ev.Err)
	require.Equal(t, hc.sent, ev.ClientBytes, "bytes from the client, over three connections' lives")
	require.Equal(t, hc.recvd, ev.ServerBytes, "bytes to the client")
	stA, stB := pA.WaitStats(), pB.WaitStats()
	require.Equal(t, uint64(3), stA.Idle.Detached)
	require.Equal(t, uint64(3), stA.Idle.Ready, "A's client woke three times: twice for a request, once for its EOF")
	require.Positive(t, stB.Idle.Ready, "B's TLS connection from A's pool parked too")
	require.Zero(t, stB.Idle.Detached, "B's pooled TLS connection is never detached (its tls.Conn holds it)")
	require.Equal(t, uint64(1), stA.FirstBytes.Ready, "A's client connection waited for its first bytes once")
	mA := pA.Metrics.Snapshot()
	require.Equal(t, 3.0, mA.Value("waiter_detached_total", "waiter", "idle"), "the counts reach the metrics")
	require.Equal(t, 1.0, mA.Value("waiter_connections_total", "waiter", "first_bytes", "outcome", "ready"))
}

// TestSilentDetached: a client silent past the first-bytes Waiter's DetachAfter is held as its
// descriptor alone, and goes on whichever way its wait ends: one that speaks is detected and
// carried, one still silent at the end of its race grace is raced and carried; both with every
// byte.
func TestSilentDetached(t *testing.T) {
	echo := lineEcho(t)
	const grace = 2 * detect.DefaultDetachAfter // detached first, then the grace ends
	var ev events
	a, _, _ := pair(t, echo, func(p *Proxy) {
		p.OnEvent = ev.add
		p.Race = &detect.RacePolicy{Grace: grace}
	})
	addr := a.ForwardAddrs[0].String()
	dial := func() net.Conn { return testnet.Dial(t, addr, 20*time.Second) }
	exchange := func(c net.Conn, line string) {
		t.Helper()
		_, err := io.WriteString(c, line+"\n")
		require.NoError(t, err)
		got, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "echo: "+line+" from 127.0.0.1\n", got)
	}
	speaker, silent := dial(), dial()
	require.Eventually(t, func() bool { return a.Proxy.WaitStats().FirstBytes.Detached == 2 }, grace*3/4, 5*time.Millisecond,
		"both silent clients detached before the grace ends")
	exchange(speaker, "spoke after the detach")
	assert.Zero(t, a.Proxy.RaceStats().Started, "the speaker was not raced")
	require.Eventually(t, func() bool { return a.Proxy.RaceStats().Started == 1 }, 2*grace, 5*time.Millisecond, "the silent one is raced")
	exchange(silent, "silent past the grace")
	st := a.Proxy.WaitStats().FirstBytes
	assert.Equal(t, uint64(1), st.Ready)
	assert.Equal(t, uint64(1), st.TimedOut)
	speaker.Close()
	silent.Close()
	var got []int64
	for _, e := range ev.wait(t, 2) {
		require.NoError(t, e.Err)
		got = append(got, e.ClientBytes)
	}
	assert.ElementsMatch(t, []int64{int64(len("spoke after the detach\n")), int64(len("silent past the grace\n"))}, got,
		"each event counts its client's bytes")
}
