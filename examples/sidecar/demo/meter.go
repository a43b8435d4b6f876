package main

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// meter wraps the client's connections to count bytes and time the first
// byte, from the application's side of the outbound sidecar.
type meter struct {
	mu    sync.Mutex
	conns []*meteredConn
}

type meteredConn struct {
	net.Conn
	start      time.Time
	sent, recv atomic.Int64
	firstWrite atomic.Int64 // ns after start, 0: none yet
	firstRead  atomic.Int64
}

func (c *meteredConn) Write(p []byte) (int, error) {
	if len(p) > 0 {
		c.firstWrite.CompareAndSwap(0, int64(time.Since(c.start))|1)
	}
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.firstRead.CompareAndSwap(0, int64(time.Since(c.start))|1)
		c.recv.Add(int64(n))
	}
	return n, err
}

// dial connects to addr, the outbound sidecar's listener for one backend.
func (m *meter) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	mc := &meteredConn{Conn: c, start: start}
	m.mu.Lock()
	m.conns = append(m.conns, mc)
	m.mu.Unlock()
	return mc, nil
}

// totals returns the connection count, bytes each way and the time to first
// byte of the first connection: from the client's first byte to the server's
// first byte, or from the connect to the server's first byte when the server
// spoke first.
func (m *meter) totals() (conns int, sent, recv int64, ttfb time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.conns {
		sent += c.sent.Load()
		recv += c.recv.Load()
	}
	if len(m.conns) > 0 {
		c := m.conns[0]
		w, r := c.firstWrite.Load(), c.firstRead.Load()
		switch {
		case r == 0:
			ttfb = -1
		case w == 0 || r < w:
			ttfb = time.Duration(r)
		default:
			ttfb = time.Duration(r - w)
		}
	}
	return len(m.conns), sent, recv, ttfb
}
