package proxyproto

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// Listener wraps a listener whose clients send a PROXY header first, for
// servers that take a net.Listener (net/http and the like). Accept returns
// at once, without reading: each [*Conn] reads its header on its first
// Read, RemoteAddr, LocalAddr or Header call, in the goroutine that serves
// it, so one slow or silent client never holds up the accept loop.
//
// A proxy that detects protocols or splices should call Reader.ReadHeader
// itself instead: it hands back the very *net.TCPConn.
type Listener struct {
	net.Listener
	// Reader reads the headers; nil means the zero Reader (a header is
	// required from every source).
	Reader *Reader
}

var zeroReader Reader

// Accept accepts a connection and returns it as a *Conn whose header is
// read later, on first use.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	r := l.Reader
	if r == nil {
		r = &zeroReader
	}
	return &Conn{raw: c, r: r}, nil
}

// Conn is a connection accepted by a Listener. Its first Read (or
// RemoteAddr, LocalAddr, Header) reads the PROXY header; from then on
// RemoteAddr and LocalAddr are the header's addresses when it carries them
// (Header.Proxied), the connection's own otherwise. When reading the
// header failed, Read returns that error; the connection should be closed.
//
// A Conn hands off to the connection it wraps for io.Copy (WriteTo,
// ReadFrom) and for package splice (Buffered and NetConn of
// splice.Unwrapper), so the bytes after the header can still be spliced.
type Conn struct {
	raw  net.Conn
	r    *Reader
	once sync.Once
	conn net.Conn // after the header: raw, or a conn replaying bytes read past it
	hdr  *Header
	err  error

	mu     sync.Mutex
	userRD time.Time // the read deadline the caller set before the header was read
	ready  bool
}

// NewConn returns a Conn over c, a connection whose header h has already been read (by
// Reader.ReadHeader): its RemoteAddr and LocalAddr are the header's addresses when it carries them,
// and io.Copy and package splice still reach c's fast path. A server that detects or splices after
// the header (a detect.Mux's Preamble) hands this to code that wants the client's address.
func NewConn(c net.Conn, h *Header) *Conn {
	pc := &Conn{raw: c, conn: c, hdr: h, ready: true}
	pc.once.Do(func() {})
	return pc
}

func (c *Conn) init() {
	c.once.Do(func() {
		c.conn, c.hdr, c.err = c.r.ReadHeader(context.Background(), c.raw)
		c.mu.Lock()
		c.ready = true
		if !c.userRD.IsZero() {
			// ReadHeader cleared the read deadline: put the caller's back.
			_ = c.raw.SetReadDeadline(c.userRD)
		}
		c.mu.Unlock()
	})
}

// Header reads the header if that has not happened yet and returns it:
// nil with a nil error when there was none (or the policy is Ignore or
// Skip).
func (c *Conn) Header() (*Header, error) {
	c.init()
	return c.hdr, c.err
}

// Read reads the bytes after the header.
func (c *Conn) Read(p []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	return c.conn.Read(p)
}

// Write writes to the connection; it does not wait for the header.
func (c *Conn) Write(p []byte) (int, error) { return c.raw.Write(p) }

// Close closes the connection.
func (c *Conn) Close() error { return c.raw.Close() }

// RemoteAddr returns the header's source address when it carries one, the
// connection's own remote address otherwise.
func (c *Conn) RemoteAddr() net.Addr {
	c.init()
	if c.hdr != nil {
		if a := c.hdr.SourceAddr(); a != nil {
			return a
		}
	}
	return c.raw.RemoteAddr()
}

// LocalAddr returns the header's destination address when it carries one,
// the connection's own local address otherwise.
func (c *Conn) LocalAddr() net.Addr {
	c.init()
	if c.hdr != nil {
		if a := c.hdr.DestinationAddr(); a != nil {
			return a
		}
	}
	return c.raw.LocalAddr()
}

// SetDeadline sets the connection's read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.noteRead(t)
	return c.raw.SetDeadline(t)
}

// SetReadDeadline sets the connection's read deadline. Before the header
// is read, the Reader's timeout bounds the wait for it, and the deadline
// applies to the reads after it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.noteRead(t)
	return c.raw.SetReadDeadline(t)
}

func (c *Conn) noteRead(t time.Time) {
	c.mu.Lock()
	if !c.ready {
		c.userRD = t
	}
	c.mu.Unlock()
}

// SetWriteDeadline sets the connection's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// CloseWrite shuts down the writing side when the connection supports it.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: c.raw.LocalAddr().Network(), Addr: c.raw.RemoteAddr(), Err: errUnsupported}
}

// WriteTo copies the bytes after the header to w (splice(2) between TCP
// connections on Linux).
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	return io.Copy(w, c.conn)
}

// ReadFrom copies r to the connection (splice(2) between TCP connections on
// Linux).
func (c *Conn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.raw, r) }

// Buffered reports how many bytes read past the header the next Read
// returns before reading from the connection (splice.Unwrapper). After a
// failed header read it reports 1, so that a reader goes through Read and
// gets the error instead of reading the connection directly.
func (c *Conn) Buffered() int {
	c.init()
	if c.err != nil {
		return 1
	}
	if b, ok := c.conn.(interface{ Buffered() int }); ok {
		return b.Buffered()
	}
	return 0
}

// NetConn returns the connection to read once Buffered reports 0: the
// accepted connection itself, or the replaying connection over it.
func (c *Conn) NetConn() net.Conn {
	c.init()
	if c.err != nil {
		return c.raw
	}
	return c.conn
}
