package splice

import (
	"crypto/tls"
	"io"
	"math/bits"
	"net"
	"os"
	"sync"
	"syscall"
)

// maxChunk bounds one splice so that observers see live counts.
const maxChunk = 4 << 20

// Buffer pools, one per power-of-two size from 1 KiB to 1 MiB. They hold
// *[]byte so that Get and Put allocate nothing.
const (
	minShift = 10
	maxShift = 20
)

var pools [maxShift - minShift + 1]sync.Pool

// size rounds n (0: def) up to a power of two within the pooled sizes.
func size(n, def int) int {
	if n <= 0 {
		n = def
	}
	if n <= 1<<minShift {
		return 1 << minShift
	}
	if n >= 1<<maxShift {
		return 1 << maxShift
	}
	return 1 << bits.Len(uint(n-1))
}

func poolFor(n int) *sync.Pool { return &pools[bits.Len(uint(n))-1-minShift] }

// result is how copy ended for one direction.
type result uint8

const (
	resEOF     result = iota // source said EOF
	resFailed                // the join was aborted by this direction
	resAborted               // the join was already aborted (timeout, cancel, the other direction)
)

// pump copies one direction.
type pump struct {
	s                *join
	dir              Flow
	src, dst         net.Conn
	srcSide, dstSide Side
	n                int64 // bytes written to dst

	f fastPath // state of the TCP path (platform specific)
}

func (p *pump) init(s *join, dir Flow, src, dst net.Conn, srcSide, dstSide Side) {
	p.s, p.dir, p.src, p.dst, p.srcSide, p.dstSide = s, dir, src, dst, srcSide, dstSide
}

// run is the body of the goroutine of the second direction.
func (p *pump) run() {
	defer p.s.wg.Done()
	p.copyDir()
}

// copyDir copies until the direction ends and acts on how it ended.
func (p *pump) copyDir() {
	if p.copy() != resEOF {
		return
	}
	s := p.s
	s.setEnd(p.srcSide, EndEOF, nil)
	if s.eofs.Add(1) == 2 {
		// Both directions are done: Join closes both connections now,
		// which sends the FIN a CloseWrite would (one system call less).
		return
	}
	// Mark dst's write half as shut before shutting it: from then on a
	// TCP state of CLOSE on dst can be a clean close (TIME_WAIT), not
	// only a reset (see eofOrReset).
	s.shut[p.dstSide-SideA].Store(true)
	if cw, ok := p.dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		return
	}
	// No half-close on this connection (or it failed): closing both ends
	// the join, cleanly.
	if !s.aborted.Swap(true) {
		s.a.Close()
		s.b.Close()
	}
}

// copy moves bytes until EOF or failure.
func (p *pump) copy() result {
	src := p.src
	for {
		u, ok := src.(Unwrapper)
		if !ok {
			break
		}
		if u.Buffered() > 0 {
			if r, done := p.drain(u); done {
				return r
			}
		}
		src = u.NetConn()
	}
	if tcp, ok := src.(*net.TCPConn); ok && fastPathAvailable {
		return p.copyTCP(tcp, unwrapTCP(p.dst))
	}
	return p.copyGeneric(src)
}

// unwrapTCP returns the *net.TCPConn under c when writing to it writes to
// the TCP connection unchanged, else nil.
func unwrapTCP(c net.Conn) *net.TCPConn {
	for {
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case Unwrapper:
			c = v.NetConn()
		default:
			return nil
		}
	}
}

// netConner is a wrapper that exposes the connection it wraps: Unwrapper,
// *tls.Conn and the like.
type netConner interface{ NetConn() net.Conn }

// innermost follows NetConn methods from c down to the connection at the
// bottom (c itself when it wraps none).
func innermost(c net.Conn) net.Conn {
	for {
		w, ok := c.(netConner)
		if !ok {
			return c
		}
		c = w.NetConn()
	}
}

func (p *pump) getBuf(n int) *[]byte { return getPooled(p.s.cfg.hooks, n) }

func (p *pump) putBuf(b *[]byte) { putPooled(p.s.cfg.hooks, b) }

// getPooled takes a buffer of n bytes (a pooled size) from its pool,
// counting it in h's buffersOut when h is set.
func getPooled(h *hooks, n int) *[]byte {
	if h != nil {
		h.buffersOut.Add(1)
		out := h.bytesOut.Add(int64(n))
		h.bufferGets.Add(1)
		for peak := h.peakBytesOut.Load(); out > peak && !h.peakBytesOut.CompareAndSwap(peak, out); {
			peak = h.peakBytesOut.Load()
		}
	}
	if b, ok := poolFor(n).Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, n)
	return &b
}

// putPooled gives a buffer of getPooled back.
func putPooled(h *hooks, b *[]byte) {
	if h != nil {
		h.buffersOut.Add(-1)
		h.bytesOut.Add(-int64(len(*b)))
	}
	poolFor(len(*b)).Put(b)
}

// account records n bytes written to dst.
func (p *pump) account(n int64) {
	p.n += n
	p.s.touch()
	if p.s.obs != nil {
		p.s.obs.Transferred(p.dir, n)
	}
}

// writeAll writes b to dst.
func (p *pump) writeAll(b []byte) error {
	_, err := p.dst.Write(b)
	return err
}

// fail ends the join because of err on side; the other side is reset.
func (p *pump) fail(side Side, op string, err error) result {
	s := p.s
	if s.aborted.Load() {
		return resAborted
	}
	other := SideA
	if side == SideA {
		other = SideB
	}
	s.abort(side, endOf(err), &Error{Side: side, Op: op, Err: err}, other)
	return resFailed
}

// eofOrReset tells a clean end of src from a reset whose error another
// system call collected first. Linux reports a reset once (ECONNRESET, to
// whichever call on the socket comes first: often the write of the other
// direction); later reads return 0 as if the peer had closed cleanly. A
// socket that read 0 while its TCP state is CLOSE and its own write half
// was never shut (which would allow TIME_WAIT, shown as CLOSE) was reset.
func (p *pump) eofOrReset() result {
	if p.s.shut[p.srcSide-SideA].Load() {
		return resEOF
	}
	if tcp, ok := innermost(p.src).(*net.TCPConn); ok && tcpClosed(tcp) {
		return p.fail(p.srcSide, "read", os.NewSyscallError("read", syscall.ECONNRESET))
	}
	return resEOF
}

// readErr handles a read error.
func (p *pump) readErr(err error) result {
	if err == io.EOF {
		return p.eofOrReset()
	}
	return p.fail(p.srcSide, "read", err)
}

// drain copies the replay bytes of u through its Read. done reports that
// the direction ended.
func (p *pump) drain(u Unwrapper) (r result, done bool) {
	b := p.getBuf(p.s.big)
	defer p.putBuf(b)
	for {
		k := u.Buffered()
		if k <= 0 {
			return 0, false
		}
		k = min(k, len(*b))
		n, err := u.Read((*b)[:k])
		if r, done := p.pass((*b)[:n], err); done {
			return r, true
		}
	}
}

// pass writes to dst what a read returned (b) and accounts for it, then acts
// on the read's error rerr; done reports that the direction ended, with r.
func (p *pump) pass(b []byte, rerr error) (r result, done bool) {
	if len(b) > 0 {
		if werr := p.writeAll(b); werr != nil {
			return p.fail(p.dstSide, "write", werr), true
		}
		p.addSmall(len(b))
		p.account(int64(len(b)))
	}
	if rerr != nil {
		return p.readErr(rerr), true
	}
	return 0, false
}

func (p *pump) addSmall(n int) {
	if h := p.s.cfg.hooks; h != nil {
		h.smallBytes.Add(int64(n))
	}
}

// maxRecord is the most plaintext one TLS record carries: crypto/tls
// returns at most one record per Read, so a read that ends a full record says
// more is probably queued.
const maxRecord = 16 << 10

// copyGeneric copies through pooled buffers (the only way to wait on an
// arbitrary net.Conn is to Read, with a buffer). A read that may wait uses a
// buffer of Joiner.WaitBufferSize bytes; one that fills it switches the
// direction to a buffer of Joiner.BufferSize, kept while reads fill it or
// end a full TLS record, and given back after a read that ends a shorter
// one (the message is over; the next read probably waits). A direction
// whose last message ended on a full record or filled the wait buffer
// exactly waits in the larger buffer until its next read. A *tls.Conn source
// has a path of its own (copyTLS).
func (p *pump) copyGeneric(src net.Conn) result {
	if t, ok := src.(*tls.Conn); ok {
		return p.copyTLS(t)
	}
	wait, big := p.s.wait, p.s.big
	b := p.getBuf(wait)
	defer func() { p.putBuf(b) }()
	run := 0 // bytes of the reads since the last one that did not fill its buffer
	for {
		n, err := src.Read(*b)
		if r, done := p.pass((*b)[:n], err); done {
			return r
		}
		l := len(*b)
		if n == l { // more is probably queued
			run += n
			if l < big {
				p.putBuf(b)
				b = p.getBuf(big)
			}
			continue
		}
		if ended := run + n; l > wait && ended%maxRecord != 0 {
			p.putBuf(b)
			b = p.getBuf(wait)
		}
		run = 0
	}
}
