package detect

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sniffsplice/sniff/internal/replay"
)

// ReplayConn is the connection Detect returns when detection had to consume bytes (any connection
// other than a Linux *net.TCPConn, or gRPC active mode). Read returns the consumed bytes first,
// exactly once, then reads from the inner connection. WriteTo and ReadFrom hand off to the inner
// connection once the buffered bytes are delivered, so io.Copy between a ReplayConn over a
// *net.TCPConn and another *net.TCPConn still reaches splice(2). It holds no more memory than the
// bytes not yet delivered. In gRPC active mode it also drops the client's ACK of the detector's
// SETTINGS frame as it passes (see Buffered).
//
// A ReplayConn is safe for concurrent use as a net.Conn is.
type ReplayConn struct {
	r replay.Conn // the replayed bytes and the inner connection

	filtering atomic.Bool // f is active: the ACK has not passed yet
	fmu       sync.Mutex  // guards f; held across a filtered inner Read
	f         ackFilter
}

// ackFilter walks the HTTP/2 frames of the client-to-server stream and drops the first SETTINGS
// frame with the ACK flag (length 0, stream 0).
type ackFilter struct {
	rem      int                    // bytes of the current frame payload (or preface) to pass
	hdr      [h2FrameHeaderLen]byte // the frame header being collected
	hdrN     int                    // bytes in hdr
	done     bool                   // the ACK was dropped: pass everything
	out      [32]byte               // filtered bytes for a Read with a small buffer
	outStart int
	outEnd   int
}

// filter filters b in place and returns the length of the bytes to hand on, b[:n]. A frame header
// cut at the end of b is kept in f.hdr (f.hdrN bytes) and is not in the output; the caller puts it
// in front of the next bytes. f.hdrN must be 0 on entry.
func (f *ackFilter) filter(b []byte) int {
	w, i := 0, 0
	for i < len(b) {
		if f.done || f.rem > 0 {
			k := len(b) - i
			if !f.done && k > f.rem {
				k = f.rem
			}
			if w != i {
				copy(b[w:], b[i:i+k])
			}
			w += k
			i += k
			if !f.done {
				f.rem -= k
			}
			continue
		}
		k := copy(f.hdr[f.hdrN:], b[i:])
		f.hdrN += k
		i += k
		if f.hdrN < h2FrameHeaderLen {
			break // i == len(b): hold the partial header
		}
		f.hdrN = 0
		h := &f.hdr
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		stream := (uint32(h[5])<<24 | uint32(h[6])<<16 | uint32(h[7])<<8 | uint32(h[8])) & 0x7fffffff
		if length == 0 && h[3] == 0x4 && h[4]&0x1 != 0 && stream == 0 {
			f.done = true // the ACK of the detector's SETTINGS: drop it
			continue
		}
		// The header's 9 bytes came from b before i, so w+9 <= i.
		w += copy(b[w:], h[:])
		f.rem = length
	}
	return w
}

// newFilteringReplayConn returns a ReplayConn over the bytes consumed after the detector wrote its
// SETTINGS frame in gRPC active mode. b starts with the client preface (or a prefix of it). The
// first SETTINGS ACK is removed from b in place or, when b does not hold it, from what is read
// later.
func newFilteringReplayConn(c net.Conn, b []byte) *ReplayConn {
	r := &ReplayConn{}
	r.f.rem = len(h2Preface)
	r.r.Init(c, b[:r.f.filter(b)])
	if !r.f.done {
		r.filtering.Store(true)
	}
	return r
}

var (
	_ net.Conn      = (*ReplayConn)(nil)
	_ io.WriterTo   = (*ReplayConn)(nil)
	_ io.ReaderFrom = (*ReplayConn)(nil)
)

// NewReplayConn returns a connection whose Read returns buffered first and then reads from c. It
// keeps buffered (it does not copy it). It is for a caller that consumed bytes itself (a server's
// first frame, a header it parsed) and must put them in front of the connection again without
// losing splice(2).
func NewReplayConn(c net.Conn, buffered []byte) *ReplayConn {
	r := &ReplayConn{}
	r.r.Init(c, buffered)
	return r
}

// NetConn returns the inner connection. Reading from it directly skips the bytes still buffered
// and, in gRPC active mode, the ACK filter: read it directly only once Buffered reports 0 (as
// splice.Join does).
func (c *ReplayConn) NetConn() net.Conn { return c.r.NetConn() }

// filterReadHint is what Buffered adds while the ACK filter is on: the bytes up to the ACK must
// pass through Read, and this is a good size for such a read.
const filterReadHint = 16 << 10

// Buffered returns how many replayed bytes Read has not yet delivered. While the SETTINGS-ACK
// filter of gRPC active mode is on, it adds 16 KiB (a read size hint, not a promise that the bytes
// have arrived): until Buffered reports 0 the caller must read through Read, not from NetConn, or
// the ACK would reach the server. It reports 0 once the replayed bytes are delivered and the ACK
// has passed.
func (c *ReplayConn) Buffered() int {
	n := 0
	if c.filtering.Load() {
		n = filterReadHint
	}
	return n + c.r.Buffered()
}

// Read reads buffered bytes first, then from the inner connection.
func (c *ReplayConn) Read(p []byte) (int, error) {
	if n, ok := c.r.Take(p); ok {
		return n, nil
	}
	if c.filtering.Load() {
		return c.readFiltered(p)
	}
	return c.r.NetConn().Read(p)
}

// readFiltered reads from the inner connection through the ACK filter.
func (c *ReplayConn) readFiltered(p []byte) (int, error) {
	inner := c.r.NetConn()
	c.fmu.Lock()
	if !c.filtering.Load() {
		c.fmu.Unlock()
		return inner.Read(p)
	}
	defer c.fmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	f := &c.f
	for zero := 0; ; {
		if f.outEnd > f.outStart {
			n := copy(p, f.out[f.outStart:f.outEnd])
			f.outStart += n
			if f.outStart == f.outEnd {
				f.outStart, f.outEnd = 0, 0
				c.finishFilter()
			}
			return n, nil
		}
		if !c.filtering.Load() {
			// The ACK was dropped on an earlier pass of this loop and nothing filtered is pending:
			// read straight through.
			return inner.Read(p)
		}
		dst := p
		small := len(p) < len(f.out) // too small to put a held header in front
		if small {
			dst = f.out[:]
		}
		k := copy(dst, f.hdr[:f.hdrN])
		f.hdrN = 0
		n, err := inner.Read(dst[k:])
		w := f.filter(dst[:k+n])
		if errors.Is(err, io.EOF) && f.hdrN > 0 {
			// The header can never complete: hand on its bytes as sent.
			w += copy(dst[w:], f.hdr[:f.hdrN])
			f.hdrN = 0
		}
		if small && w > 0 {
			m := copy(p, dst[:w])
			if m < w {
				f.outStart, f.outEnd = m, w
				return m, nil
			}
			w = m
		}
		c.finishFilter()
		if w == 0 && err == nil {
			if n == 0 {
				if zero++; zero > 100 {
					return 0, io.ErrNoProgress
				}
			}
			continue // all of it held or dropped: read again
		}
		return w, err
	}
}

// finishFilter turns the filter off once the ACK was dropped and nothing filtered is pending. c.fmu
// is held.
func (c *ReplayConn) finishFilter() {
	if c.f.done && c.f.hdrN == 0 && c.f.outEnd == c.f.outStart {
		c.filtering.Store(false)
	}
}

// WriteTo writes the buffered bytes to w, then copies the inner connection to w with io.Copy (which
// splices between TCP connections on Linux).
func (c *ReplayConn) WriteTo(w io.Writer) (int64, error) {
	total, err := c.r.WriteBufferedTo(w)
	if err != nil {
		return total, err
	}
	if c.filtering.Load() {
		// Copy through the filter until the ACK has passed.
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		for c.filtering.Load() {
			n, err := c.Read(*bp)
			if n > 0 {
				m, werr := w.Write((*bp)[:n])
				total += int64(m)
				if werr == nil && m < n {
					werr = io.ErrShortWrite
				}
				if werr != nil {
					return total, werr
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					return total, nil
				}
				return total, err
			}
		}
	}
	n, err := io.Copy(w, c.r.NetConn())
	return total + n, err
}

// ReadFrom copies r to the inner connection with io.Copy (which splices between TCP connections on
// Linux).
func (c *ReplayConn) ReadFrom(r io.Reader) (int64, error) { return c.r.ReadFrom(r) }

// Write writes to the inner connection.
func (c *ReplayConn) Write(p []byte) (int, error) { return c.r.Write(p) }

// Close closes the inner connection and drops the buffered bytes.
func (c *ReplayConn) Close() error { return c.r.Close() }

// CloseWrite shuts down the writing side of the inner connection when it supports it (*net.TCPConn,
// *net.UnixConn, *tls.Conn); otherwise it returns an error wrapping errors.ErrUnsupported.
func (c *ReplayConn) CloseWrite() error { return c.r.CloseWrite() }

// CloseRead shuts down the reading side of the inner connection when it supports it; otherwise it
// returns an error wrapping errors.ErrUnsupported.
func (c *ReplayConn) CloseRead() error { return c.r.CloseRead() }

// LocalAddr returns the inner connection's local address.
func (c *ReplayConn) LocalAddr() net.Addr { return c.r.LocalAddr() }

// RemoteAddr returns the inner connection's remote address.
func (c *ReplayConn) RemoteAddr() net.Addr { return c.r.RemoteAddr() }

// SetDeadline sets the inner connection's deadlines. Buffered bytes are returned regardless of the
// read deadline.
func (c *ReplayConn) SetDeadline(t time.Time) error { return c.r.SetDeadline(t) }

// SetReadDeadline sets the inner connection's read deadline. Buffered bytes are returned regardless
// of it.
func (c *ReplayConn) SetReadDeadline(t time.Time) error { return c.r.SetReadDeadline(t) }

// SetWriteDeadline sets the inner connection's write deadline.
func (c *ReplayConn) SetWriteDeadline(t time.Time) error { return c.r.SetWriteDeadline(t) }
