package proxy

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// closeCounter is an upstream connection that counts its Close calls.
type closeCounter struct {
	net.Conn
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

// TestH1PoolPurge: the direct path's pool closes half of the connections idle for h1PurgeDelay
// every h1PurgeDelay, least recently used first, down to h1MinIdle; those it leaves are closed
// once idle for h1IdleTime; a connection reused in between is not touched; the purge stops
// with the pool's last idle connection and with closeIdle.
func TestH1PoolPurge(t *testing.T) {
	oldDelay, oldIdle := h1PurgeDelay, h1IdleTime
	h1PurgeDelay, h1IdleTime = 50*time.Millisecond, 600*time.Millisecond
	t.Cleanup(func() { h1PurgeDelay, h1IdleTime = oldDelay, oldIdle })

	var p h1Pool
	conns := make([]*closeCounter, 20)
	for i := range conns {
		conns[i] = &closeCounter{}
		p.put(&upConn{Conn: conns[i]})
	}
	count := func() (open, closed int) {
		for _, c := range conns {
			switch c.closed.Load() {
			case 0:
				open++
			case 1:
				closed++
			default:
				t.Fatalf("a connection closed %d times", c.closed.Load())
			}
		}
		return
	}
	idle := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.idle)
	}
	// Half at each purge: 20 → 10 → 5 → 4 (h1MinIdle), the oldest first.
	require.Eventually(t, func() bool { return idle() == h1MinIdle }, 5*time.Second, time.Millisecond)
	open, closed := count()
	require.Equal(t, h1MinIdle, open)
	require.Equal(t, 20-h1MinIdle, closed)
	for i, c := range conns {
		require.Equal(t, i < 20-h1MinIdle, c.closed.Load() == 1, "connection %d: least recently used first", i)
	}
	// A connection taken and put back is the most recently used: it outlives the others.
	uc := p.get()
	require.Same(t, conns[19], uc.Conn)
	time.Sleep(h1IdleTime / 2)
	p.put(uc)
	require.Eventually(t, func() bool { return idle() == 1 }, 5*time.Second, time.Millisecond, "idle past h1IdleTime: closed below h1MinIdle")
	require.Zero(t, conns[19].closed.Load(), "the reused connection is still idle")
	require.Eventually(t, func() bool { return idle() == 0 }, 5*time.Second, time.Millisecond)
	open, closed = count()
	require.Equal(t, 0, open)
	require.Equal(t, 20, closed)
	p.mu.Lock()
	require.Nil(t, p.purge, "no purge without idle connections")
	p.mu.Unlock()

	// closeIdle closes what is idle and stops the purge.
	last := &closeCounter{}
	p.put(&upConn{Conn: last})
	p.closeIdle()
	require.Equal(t, int32(1), last.closed.Load())
	p.mu.Lock()
	require.Nil(t, p.purge)
	p.mu.Unlock()
}

// idleUpConns returns the idle upstream connections of every pool of p's direct path.
func idleUpConns(p *Proxy) []*upConn {
	p.http.mu.Lock()
	defer p.http.mu.Unlock()
	var out []*upConn
	for _, m := range []map[transportKey]*pooledTransport{p.http.out, p.http.in} {
		for _, t := range m {
			t.h1.mu.Lock()
			out = append(out, t.h1.idle...)
			t.h1.mu.Unlock()
		}
	}
	return out
}

// TestIdleUpConnHoldsNoBuffer: an upstream connection idle in its pool (A's to B, B's to the
// application) holds no read buffer, and takes one again when it is reused: the requests after
// it are carried whole, on the same connections.
func TestIdleUpConnHoldsNoBuffer(t *testing.T) {
	var evA, evB events
	addr, pA, pB := h1Pair(t, h1Backend(t), &evA, &evB, noEarlyRace)
	hc := dialH1(t, addr)
	first := map[*Proxy]*upConn{}
	for i := range 3 {
		resp, body := hc.do(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: app\r\n\r\n", i))
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, body, fmt.Sprintf("GET /%d", i))
		for _, p := range []*Proxy{pA, pB} {
			var idle []*upConn
			require.Eventually(t, func() bool { idle = idleUpConns(p); return len(idle) == 1 }, 5*time.Second, time.Millisecond,
				"one idle upstream connection")
			require.Nil(t, idle[0].br, "an idle pooled connection holds no read buffer")
			if i == 0 {
				first[p] = idle[0]
			}
			require.Same(t, first[p], idle[0], "the same upstream connection each time (it took a reader again)")
		}
	}
	require.Equal(t, uint64(3), pA.http.direct.Load(), "all three requests on the direct path")
}
