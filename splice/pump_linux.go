//go:build linux

package splice

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const fastPathAvailable = true

// fastPath is the state of a direction whose source is a TCP socket.
type fastPath struct {
	rc        syscall.RawConn
	readFn    func(fd uintptr) bool
	bufLen    int  // size of the pooled buffer
	canSplice bool // dst is TCP and splice is allowed
	bulk      bool // the last read filled the buffer: look at the queue first

	// how readFn left
	buf   *[]byte // f.rn bytes read, to write
	rn    int
	rerr  error // read error
	eof   bool  // read returned 0
	avail int   // >0: this many bytes are queued, splice them

	lr io.LimitedReader
}

// readReady runs inside src's SyscallConn().Read. It never blocks: on
// EAGAIN it returns the buffer to the pool and returns false, and the
// runtime parks the goroutine until the socket is readable, with neither a
// buffer nor a pipe checked out. It returns true with bytes in f.buf (or
// f.eof, f.rerr), or, in bulk mode, with f.avail bytes queued for splice.
// It does not write: a write that blocks would hold src's read reference,
// and a Close of src (which waits for its references) would then wait on
// dst's peer.
func (p *pump) readReady(fd uintptr) bool {
	f := &p.f
	if f.bulk {
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err == nil && n >= f.bufLen {
			f.avail = n
			return true
		}
	}
	b := p.getBuf(f.bufLen)
	for {
		n, err := unix.Read(int(fd), *b)
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			p.putBuf(b)
			return false // bulk stays: after the wait, look at the queue first
		default:
			p.putBuf(b)
			f.rerr = err
			return true
		}
		if n == 0 {
			p.putBuf(b)
			f.eof = true
			return true
		}
		f.buf, f.rn = b, n
		return true
	}
}

// copyTCP copies from a TCP socket; dst is the TCP connection under p.dst
// (nil when there is none, then nothing is spliced). Small messages go
// read, write, then a read that says EAGAIN (only EAGAIN says the socket is
// drained: a FIN queued behind the data of a short read may have been
// announced by a readiness edge the poller already consumed).
func (p *pump) copyTCP(src, dst *net.TCPConn) result {
	f := &p.f
	rc, err := src.SyscallConn()
	if err != nil {
		return p.copyGeneric(src)
	}
	f.rc = rc
	f.readFn = p.readReady
	f.bufLen = p.s.small
	f.canSplice = dst != nil && !p.s.cfg.DisableSplice
	if !f.canSplice {
		f.bufLen = max(f.bufLen, p.s.big)
	}
	h := p.s.cfg.hooks
	for {
		f.avail, f.buf, f.rn = 0, nil, 0
		if err := f.rc.Read(f.readFn); err != nil {
			return p.readErr(err)
		}
		switch {
		case f.rerr != nil:
			return p.fail(p.srcSide, "read", os.NewSyscallError("read", f.rerr))
		case f.eof:
			return p.eofOrReset()
		case f.buf != nil:
			b, n := f.buf, f.rn
			werr := p.writeAll((*b)[:n])
			p.putBuf(b)
			f.buf = nil
			if werr != nil {
				return p.fail(p.dstSide, "write", werr)
			}
			p.addSmall(n)
			p.account(int64(n))
			f.bulk = f.canSplice && n == f.bufLen // a full buffer: look at the queue
			continue
		}
		// f.avail > 0: splice what is queued.
		f.lr.R, f.lr.N = src, int64(min(f.avail, maxChunk))
		if h != nil {
			h.splicing.Add(1)
		}
		n, err := dst.ReadFrom(&f.lr)
		if h != nil {
			h.splicing.Add(-1)
			h.splicedBytes.Add(n)
			h.spliceCalls.Add(1)
		}
		f.lr.R = nil
		if n > 0 {
			p.account(n)
		} else if err == nil {
			f.bulk = false // nothing moved: fall back to a read
		}
		if err != nil {
			return p.fail(spliceSide(p, src, dst, err), "splice", err)
		}
	}
}

// spliceSide finds which connection failed a splice: EPIPE can only come
// from the write; otherwise the one whose TCP state is CLOSE (reset) is the
// culprit, the source when both or neither are.
func spliceSide(p *pump, src, dst *net.TCPConn, err error) Side {
	if errors.Is(err, syscall.EPIPE) {
		return p.dstSide
	}
	if tcpClosed(dst) && !tcpClosed(src) {
		return p.dstSide
	}
	return p.srcSide
}

// tcpClosed reports whether c's TCP state is CLOSE: after a reset (or, once
// its write half is shut, a clean close through TIME_WAIT).
func tcpClosed(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	rc.Control(func(fd uintptr) { closed = tcpStateClosed(int(fd)) })
	return closed
}

// tcpStateClosed reports whether the TCP state of socket fd is CLOSE.
func tcpStateClosed(fd int) bool {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	return err == nil && ti.State == unix.BPF_TCP_CLOSE
}
