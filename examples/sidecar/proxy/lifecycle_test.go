package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
)

// pair starts sidecar B (inbound, with its metrics) and sidecar A with one forward listener to
// dst, A configured by cfgA.
func pair(t *testing.T, dst netip.AddrPort, cfgA func(*Proxy)) (a, b *Sidecar, regB *metrics.Registry) {
	t.Helper()
	ca := mtlstest.MustNew("lifecycle.test")
	srcA, srcB := ca.Source("/a"), ca.Source("/b")
	regB = metrics.New(metrics.Config{})
	b, err := Start(context.Background(), &Proxy{TLS: &mtls.Config{SVID: srcB, Bundle: srcB}, Metrics: regB}, Listeners{Inbound: "127.0.0.1:0"})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	pA := &Proxy{TLS: &mtls.Config{SVID: srcA, Bundle: srcA},
		Peers: func(netip.AddrPort) (Peer, error) { return Peer{Addr: b.InboundAddr.String()}, nil }}
	if cfgA != nil {
		cfgA(pA)
	}
	a, err = Start(context.Background(), pA, Listeners{Forwards: []Forward{{Listen: "127.0.0.1:0", Dst: dst}}})
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	return a, b, regB
}

func handshakes(reg *metrics.Registry) float64 {
	return reg.Snapshot().Value("tls_handshake_total")
}

// TestHTTPClientsCauseNoHandshake: HTTP clients speak within the race's grace, so A detects them
// without dialling first: no race, and sidecar B sees no connection opened and closed unused (no
// transport header announcing no session protocol), only the pooled ones.
func TestHTTPClientsCauseNoHandshake(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	backend := httpBackend(t, srv)
	var ev events
	a, _, regB := pair(t, backend, func(p *Proxy) {
		p.OnEvent = ev.add
		// A grace no client of a loaded test machine overruns: what is tested is that a
		// client that speaks within it is never raced.
		p.Race = &detect.RacePolicy{Grace: time.Second}
	})
	for i := range 5 {
		tr := &http.Transport{}
		resp, err := (&http.Client{Transport: tr}).Get("http://" + a.ForwardAddrs[0].String() + "/")
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections() // a new client connection each time
		ev.wait(t, i+1)
	}
	for _, e := range ev.wait(t, 5) {
		require.Equal(t, detect.HTTP1, e.Protocol)
	}
	assert.Zero(t, a.Proxy.RaceStats().Started, "no race: every client spoke within the grace")
	assert.Zero(t, regB.Snapshot().Value("transport_header_read_total", "session_protocol", "none"),
		"no early, unused connection reached B")
	assert.LessOrEqual(t, handshakes(regB), 1.0, "B served the pool's connection only")
	assert.Equal(t, uint64(5), a.Proxy.WaitStats().FirstBytes.Ready, "each client waited for its first bytes once")
	require.NoError(t, a.Close())
	st := a.Proxy.WaitStats()
	assert.Equal(t, uint64(5), st.FirstBytes.Ready, "the counts of a listener that has ended are kept")
	assert.Zero(t, st.FirstBytes.Waiting+st.Idle.Waiting)
}

// TestSilentClientsCostThePeerNothing: silent clients on an undeclared port wait in A's Waiter
// without a goroutine and cause no handshake to B until their grace has passed; then at most
// MaxRaces are raced, never with more than MaxHandshakes handshakes at once; a client that speaks
// meanwhile is served at once, and none of the silent ones is closed.
func TestSilentClientsCostThePeerNothing(t *testing.T) {
	echo := lineEcho(t)
	const silent, maxRaces, grace = 40, 5, 300 * time.Millisecond
	a, _, regB := pair(t, echo, func(p *Proxy) {
		p.Race = &detect.RacePolicy{Grace: grace, MaxRaces: maxRaces}
		p.MaxHandshakes = 2
	})
	addr := a.ForwardAddrs[0].String()
	before := runtime.NumGoroutine()
	var conns []net.Conn
	for range silent {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		conns = append(conns, c)
	}
	opened := time.Now()
	time.Sleep(grace / 3)
	assert.Zero(t, handshakes(regB), "no handshake before the grace has passed")
	assert.LessOrEqual(t, runtime.NumGoroutine()-before, 4, "silent clients hold no goroutine each")

	// A client that speaks is served at once, beside them.
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, "hello\n")
	require.NoError(t, err)
	line := make([]byte, len("echo: hello"))
	_, err = io.ReadFull(c, line)
	require.NoError(t, err)
	assert.Equal(t, "echo: hello", string(line))

	// Past the grace: races start, at most maxRaces of them, and the handshakes at most two at once.
	var peak int
	var mu sync.Mutex
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		peak = max(peak, a.Proxy.Handshakes().Running)
		mu.Unlock()
		if a.Proxy.RaceStats().Started == maxRaces && time.Since(opened) > grace+200*time.Millisecond {
			break
		}
		time.Sleep(time.Millisecond)
	}
	rs := a.Proxy.RaceStats()
	assert.Equal(t, uint64(maxRaces), rs.Started, "MaxRaces silent clients raced")
	assert.Equal(t, uint64(silent-maxRaces), rs.Capped, "the others wait on without a race")
	assert.LessOrEqual(t, peak, 2, "never more handshakes at once than MaxHandshakes")
	assert.LessOrEqual(t, handshakes(regB), float64(maxRaces+1), "B saw the races' handshakes (and the speaking client's) only")
	// No silent client was closed.
	for _, sc := range conns {
		require.NoError(t, sc.SetReadDeadline(time.Now().Add(time.Millisecond)))
		_, err := sc.Read(make([]byte, 1))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "a silent client is still open")
	}
}

// TestClosingClientsCostThePeerNothing: clients that connect and close without a byte (the end of
// a flood) are closed by A without dialling B: no handshake for nothing to carry.
func TestClosingClientsCostThePeerNothing(t *testing.T) {
	echo := lineEcho(t)
	var ev events
	a, _, regB := pair(t, echo, func(p *Proxy) {
		p.OnEvent = ev.add
		p.Race = &detect.RacePolicy{Grace: time.Second} // they close within it: no race either
	})
	const n = 20
	for range n {
		c, err := net.Dial("tcp", a.ForwardAddrs[0].String())
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
	for _, e := range ev.wait(t, n) {
		assert.Equal(t, detect.ReasonClosed, e.Detect.Reason)
		assert.NoError(t, e.Err)
	}
	assert.Zero(t, handshakes(regB), "no handshake to the peer")
	assert.Zero(t, a.Proxy.RaceStats().Started)
}

// TestRaceSlotEndsWithTheRace: a silent client raced against a server that
// speaks first holds its race slot while the race runs, not while the
// connection it decided is carried; so with MaxRaces 1, a second silent
// client is raced after its own grace, while the first is still open,
// instead of waiting on for its detection timeout.
func TestRaceSlotEndsWithTheRace(t *testing.T) {
	const grace = 100 * time.Millisecond
	a, _, _ := pair(t, greeter(t), func(p *Proxy) {
		p.Race = &detect.RacePolicy{Grace: grace, MaxRaces: 1}
	})
	addr := a.ForwardAddrs[0].String()
	greeted := func() net.Conn {
		// Well inside the detection timeout (10 s): only a race answers in time.
		c := testnet.Dial(t, addr, 3*time.Second)
		line, err := bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err, "the server's greeting")
		require.Equal(t, "220 greeter ready\r\n", line)
		return c
	}
	greeted()
	require.Eventually(t, func() bool { return a.Proxy.RaceStats().Running == 0 }, 2*time.Second, time.Millisecond,
		"the race is over once the server has spoken, though its connection is open")
	greeted()
	rs := a.Proxy.RaceStats()
	assert.Equal(t, uint64(2), rs.Started, "both silent clients raced")
	assert.Zero(t, rs.Capped, "none waited for a race slot")
}
