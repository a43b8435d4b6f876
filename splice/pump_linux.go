//go:build linux

package splice

import (
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
	rerr  error // read error
	werr  error // write error
	eof   bool  // read returned 0
	avail int   // >0: this many bytes are queued, splice them

	lr io.LimitedReader
}

// readReady runs inside src's SyscallConn().Read and carries the small
// messages: it reads what is queued into a pooled buffer, writes it to dst
// and returns the buffer to the pool, in a loop. It never waits for src
// itself: when the socket is drained (EAGAIN) it returns false and the
// runtime parks the goroutine until the next readiness edge, with neither a
// buffer nor a pipe checked out. Staying inside one RawRead for a run of
// messages saves the lock and poller reset of a new call per message. It
// returns true to leave for splice (f.avail > 0), or on EOF or an error
// (f.eof, f.rerr, f.werr).
func (p *pump) readReady(fd uintptr) bool {
	f := &p.f
	for {
		if f.bulk {
			n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
			if err == nil && n >= f.bufLen {
				f.avail = n
				return true
			}
		}
		b := p.getBuf(f.bufLen)
		n, err := unix.Read(int(fd), *b)
		switch err {
		case nil:
		case unix.EINTR:
			p.putBuf(b)
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
		werr := p.writeAll((*b)[:n])
		p.putBuf(b)
		if werr != nil {
			f.werr = werr
			return true
		}
		p.addSmall(n)
		p.account(int64(n))
		// Read again: only EAGAIN says the socket is drained. A short read
		// does not: a FIN (or a reset) queued behind the data it returned
		// may have been announced by a readiness edge that RawRead's
		// prepareRead cleared, or that merged with the edge that woke us,
		// and waiting now would miss it until the peer sends again.
		f.bulk = f.canSplice && n == f.bufLen // a full buffer: look at the queue
	}
}

// copyTCP copies from a TCP socket; dst is the TCP connection under p.dst
// (nil when there is none, then nothing is spliced).
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
		f.avail = 0
		if err := f.rc.Read(f.readFn); err != nil {
			return p.readErr(err)
		}
		switch {
		case f.rerr != nil:
			return p.fail(p.srcSide, "read", os.NewSyscallError("read", f.rerr))
		case f.werr != nil:
			return p.fail(p.dstSide, "write", f.werr)
		case f.eof:
			return resEOF
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
	if isErrno(err, syscall.EPIPE) {
		return p.dstSide
	}
	if tcpClosed(dst) && !tcpClosed(src) {
		return p.dstSide
	}
	return p.srcSide
}

func isErrno(err error, e syscall.Errno) bool {
	var x syscall.Errno
	return asErrno(err, &x) && x == e
}

// tcpClosed reports whether c's TCP state is CLOSE (after a reset).
func tcpClosed(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	rc.Control(func(fd uintptr) {
		ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		closed = err == nil && ti.State == unix.BPF_TCP_CLOSE
	})
	return closed
}
