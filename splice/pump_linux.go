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
	rc     syscall.RawConn
	readFn func(fd uintptr) bool
	bufLen int  // size of the pooled buffer
	bulk   bool // the last read filled the buffer: look at the queue first

	// results of readFn
	buf   *[]byte
	rn    int
	rerr  error
	avail int // >0: this many bytes are queued, splice them

	lr io.LimitedReader
}

// readReady runs inside src's SyscallConn().Read. It never blocks: it
// returns false on EAGAIN (the runtime then parks the goroutine until the
// socket is readable) and holds neither a buffer nor a pipe while it waits.
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
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			p.putBuf(b)
			return false
		case nil:
		default:
			n = 0
		}
		f.buf, f.rn, f.rerr = b, n, err
		return true
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
	canSplice := dst != nil && !p.s.cfg.DisableSplice
	if !canSplice {
		f.bufLen = max(f.bufLen, p.s.big)
	}
	h := p.s.cfg.hooks
	for {
		f.buf, f.rn, f.rerr, f.avail = nil, 0, nil, 0
		if err := f.rc.Read(f.readFn); err != nil {
			return p.readErr(err)
		}
		if f.avail > 0 {
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
			continue
		}
		b := f.buf
		if f.rerr != nil {
			p.putBuf(b)
			return p.fail(p.srcSide, "read", os.NewSyscallError("read", f.rerr))
		}
		if f.rn == 0 {
			p.putBuf(b)
			return resEOF
		}
		n := f.rn
		werr := p.writeAll((*b)[:n])
		p.putBuf(b)
		if werr != nil {
			return p.fail(p.dstSide, "write", werr)
		}
		p.addSmall(n)
		p.account(int64(n))
		f.bulk = canSplice && n == f.bufLen
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
