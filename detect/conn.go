package detect

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ReplayConn is the connection Detect returns when detection had to consume
// bytes (any connection other than a Linux *net.TCPConn, or gRPC active
// mode). Read returns the consumed bytes first, exactly once, then reads
// from the inner connection. WriteTo and ReadFrom hand off to the inner
// connection once the buffered bytes are delivered, so io.Copy between a
// ReplayConn over a *net.TCPConn and another *net.TCPConn still reaches
// splice(2). It holds no more memory than the bytes not yet delivered.
//
// A ReplayConn is safe for concurrent use as a net.Conn is.
type ReplayConn struct {
	conn    net.Conn
	drained atomic.Bool
	mu      sync.Mutex
	buf     []byte // bytes not yet delivered; nil once drained
}

var (
	_ net.Conn      = (*ReplayConn)(nil)
	_ io.WriterTo   = (*ReplayConn)(nil)
	_ io.ReaderFrom = (*ReplayConn)(nil)
)

// NewReplayConn returns a connection whose Read returns buffered first and
// then reads from c. It keeps buffered (it does not copy it).
func NewReplayConn(c net.Conn, buffered []byte) *ReplayConn {
	r := &ReplayConn{conn: c}
	if len(buffered) == 0 {
		r.drained.Store(true)
	} else {
		r.buf = buffered
	}
	return r
}

// NetConn returns the inner connection. Reading from it directly skips the
// bytes still buffered (see Buffered).
func (c *ReplayConn) NetConn() net.Conn { return c.conn }

// Buffered returns how many replayed bytes Read has not yet delivered.
func (c *ReplayConn) Buffered() int {
	if c.drained.Load() {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf)
}

// take removes up to max buffered bytes (all when max < 0).
func (c *ReplayConn) take(p []byte) (n int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) == 0 {
		return 0, false
	}
	n = copy(p, c.buf)
	c.buf = c.buf[n:]
	if len(c.buf) == 0 {
		c.buf = nil
		c.drained.Store(true)
	}
	return n, true
}

// Read reads buffered bytes first, then from the inner connection.
func (c *ReplayConn) Read(p []byte) (int, error) {
	if !c.drained.Load() && len(p) > 0 {
		if n, ok := c.take(p); ok {
			return n, nil
		}
	}
	return c.conn.Read(p)
}

// WriteTo writes the buffered bytes to w, then copies the inner connection
// to w with io.Copy (which splices between TCP connections on Linux).
func (c *ReplayConn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if !c.drained.Load() {
		c.mu.Lock()
		b := c.buf
		c.buf = nil
		c.drained.Store(true)
		c.mu.Unlock()
		for len(b) > 0 {
			n, err := w.Write(b)
			total += int64(n)
			b = b[n:]
			if err != nil || n == 0 {
				if len(b) > 0 {
					c.mu.Lock()
					c.buf = append(b[:len(b):len(b)], c.buf...)
					c.drained.Store(false)
					c.mu.Unlock()
				}
				if err == nil {
					err = io.ErrShortWrite
				}
				return total, err
			}
		}
	}
	n, err := io.Copy(w, c.conn)
	return total + n, err
}

// ReadFrom copies r to the inner connection with io.Copy (which splices
// between TCP connections on Linux).
func (c *ReplayConn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(c.conn, r)
}

// Write writes to the inner connection.
func (c *ReplayConn) Write(p []byte) (int, error) { return c.conn.Write(p) }

// Close closes the inner connection and drops the buffered bytes.
func (c *ReplayConn) Close() error {
	c.mu.Lock()
	c.buf = nil
	c.drained.Store(true)
	c.mu.Unlock()
	return c.conn.Close()
}

// CloseWrite shuts down the writing side of the inner connection when it
// supports it (*net.TCPConn, *net.UnixConn, *tls.Conn); otherwise it returns
// an error wrapping errors.ErrUnsupported.
func (c *ReplayConn) CloseWrite() error {
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: c.conn.LocalAddr().Network(), Source: c.conn.LocalAddr(), Addr: c.conn.RemoteAddr(), Err: errors.ErrUnsupported}
}

// CloseRead shuts down the reading side of the inner connection when it
// supports it; otherwise it returns an error wrapping errors.ErrUnsupported.
func (c *ReplayConn) CloseRead() error {
	if cr, ok := c.conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return &net.OpError{Op: "close", Net: c.conn.LocalAddr().Network(), Source: c.conn.LocalAddr(), Addr: c.conn.RemoteAddr(), Err: errors.ErrUnsupported}
}

// LocalAddr returns the inner connection's local address.
func (c *ReplayConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the inner connection's remote address.
func (c *ReplayConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the inner connection's deadlines. Buffered bytes are
// returned regardless of the read deadline.
func (c *ReplayConn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the inner connection's read deadline. Buffered bytes
// are returned regardless of it.
func (c *ReplayConn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the inner connection's write deadline.
func (c *ReplayConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
