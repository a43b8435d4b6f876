// Package replay holds the replaying connection that package detect and
// package proxyproto return when they had to read (consume) bytes from a
// connection that cannot be peeked: Read returns those bytes first, exactly
// once, then reads from the inner connection, and WriteTo and ReadFrom hand
// off to the inner connection once the bytes are delivered, so io.Copy
// between a replaying conn over a *net.TCPConn and another *net.TCPConn
// still reaches splice(2). Buffered and NetConn make it a splice.Unwrapper.
package replay

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Conn replays buffered bytes before reading from the connection it wraps.
// The zero value is not usable: make one with New or Init. It is safe for
// concurrent use as a net.Conn is.
type Conn struct {
	conn    net.Conn
	drained atomic.Bool
	mu      sync.Mutex
	buf     []byte // bytes not yet delivered; nil once drained
}

var (
	_ net.Conn      = (*Conn)(nil)
	_ io.WriterTo   = (*Conn)(nil)
	_ io.ReaderFrom = (*Conn)(nil)
)

// New returns a connection whose Read returns buffered first and then reads
// from c. It keeps buffered (it does not copy it).
func New(c net.Conn, buffered []byte) *Conn {
	r := &Conn{}
	r.Init(c, buffered)
	return r
}

// Init makes r replay buffered, then read from c (for a Conn embedded in
// another struct). It keeps buffered.
func (r *Conn) Init(c net.Conn, buffered []byte) {
	r.conn = c
	if len(buffered) == 0 {
		r.drained.Store(true)
		return
	}
	r.buf = buffered
}

// NetConn returns the inner connection. Reading from it directly skips the
// bytes still buffered: read it directly only once Buffered reports 0.
func (r *Conn) NetConn() net.Conn { return r.conn }

// Buffered returns how many replayed bytes Read has not yet delivered.
func (r *Conn) Buffered() int {
	if r.drained.Load() {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.buf)
}

// Take moves the first buffered bytes into p; ok is false when none are
// left (or p is empty).
func (r *Conn) Take(p []byte) (n int, ok bool) {
	if r.drained.Load() || len(p) == 0 {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) == 0 {
		return 0, false
	}
	n = copy(p, r.buf)
	r.buf = r.buf[n:]
	if len(r.buf) == 0 {
		r.buf = nil
		r.drained.Store(true)
	}
	return n, true
}

// Read reads buffered bytes first, then from the inner connection.
func (r *Conn) Read(p []byte) (int, error) {
	if n, ok := r.Take(p); ok {
		return n, nil
	}
	return r.conn.Read(p)
}

// WriteBufferedTo writes the bytes not yet delivered to w. On a failed or
// short write the bytes w did not take stay buffered.
func (r *Conn) WriteBufferedTo(w io.Writer) (int64, error) {
	if r.drained.Load() {
		return 0, nil
	}
	r.mu.Lock()
	b := r.buf
	r.buf = nil
	r.drained.Store(true)
	r.mu.Unlock()
	var total int64
	for len(b) > 0 {
		n, err := w.Write(b)
		total += int64(n)
		b = b[n:]
		if err != nil || n == 0 {
			if len(b) > 0 {
				r.mu.Lock()
				r.buf = append(b[:len(b):len(b)], r.buf...)
				r.drained.Store(false)
				r.mu.Unlock()
			}
			if err == nil {
				err = io.ErrShortWrite
			}
			return total, err
		}
	}
	return total, nil
}

// WriteTo writes the buffered bytes to w, then copies the inner connection
// to w with io.Copy (which splices between TCP connections on Linux).
func (r *Conn) WriteTo(w io.Writer) (int64, error) {
	total, err := r.WriteBufferedTo(w)
	if err != nil {
		return total, err
	}
	n, err := io.Copy(w, r.conn)
	return total + n, err
}

// ReadFrom copies src to the inner connection with io.Copy (which splices
// between TCP connections on Linux).
func (r *Conn) ReadFrom(src io.Reader) (int64, error) {
	return io.Copy(r.conn, src)
}

// Write writes to the inner connection.
func (r *Conn) Write(p []byte) (int, error) { return r.conn.Write(p) }

// Close closes the inner connection and drops the buffered bytes.
func (r *Conn) Close() error {
	r.mu.Lock()
	r.buf = nil
	r.drained.Store(true)
	r.mu.Unlock()
	return r.conn.Close()
}

// CloseWrite shuts down the writing side of the inner connection when it
// supports it (*net.TCPConn, *net.UnixConn, *tls.Conn); otherwise it returns
// an error wrapping errors.ErrUnsupported.
func (r *Conn) CloseWrite() error {
	if cw, ok := r.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return r.unsupported()
}

// CloseRead shuts down the reading side of the inner connection when it
// supports it; otherwise it returns an error wrapping errors.ErrUnsupported.
func (r *Conn) CloseRead() error {
	if cr, ok := r.conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return r.unsupported()
}

func (r *Conn) unsupported() error {
	return &net.OpError{Op: "close", Net: r.conn.LocalAddr().Network(), Source: r.conn.LocalAddr(), Addr: r.conn.RemoteAddr(), Err: errors.ErrUnsupported}
}

// LocalAddr returns the inner connection's local address.
func (r *Conn) LocalAddr() net.Addr { return r.conn.LocalAddr() }

// RemoteAddr returns the inner connection's remote address.
func (r *Conn) RemoteAddr() net.Addr { return r.conn.RemoteAddr() }

// SetDeadline sets the inner connection's deadlines. Buffered bytes are
// returned regardless of the read deadline.
func (r *Conn) SetDeadline(t time.Time) error { return r.conn.SetDeadline(t) }

// SetReadDeadline sets the inner connection's read deadline. Buffered bytes
// are returned regardless of it.
func (r *Conn) SetReadDeadline(t time.Time) error { return r.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the inner connection's write deadline.
func (r *Conn) SetWriteDeadline(t time.Time) error { return r.conn.SetWriteDeadline(t) }
