//go:build linux

package proxyproto

import (
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sniffsplice/sniff/internal/peek"
)

// peeker is the pooled state of one header peek.
type peeker struct {
	buf  []byte  // nil while nothing has arrived
	bufp *[]byte // where buf came from in bufPool (nil: grown)
	max  int
	pol  Policy
	res  result
	fn   func(fd uintptr) bool
}

// peekBufLen fits a v1 line and the v2 headers of common load balancers;
// a longer v2 header gets a buffer of its own length.
const peekBufLen = 512

var bufPool = sync.Pool{New: func() any { b := make([]byte, peekBufLen); return &b }}

var peekerPool = sync.Pool{New: func() any {
	p := &peeker{}
	p.fn = p.peek
	return p
}}

// peekHeader peeks at c's first bytes with recv(MSG_PEEK) when c is a
// *net.TCPConn and consumes exactly the header's bytes when it is to be
// used or ignored. It reports false when c needs the reading path.
func peekHeader(c net.Conn, max int, pol Policy, res *result) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	p := peekerPool.Get().(*peeker)
	p.max, p.pol = max, pol
	err = rc.Read(p.fn)
	if err != nil && p.res.ioErr == nil && p.res.err == nil && p.res.v == needMore && !p.res.eof {
		p.res.ioErr = err // the deadline, or a closed connection
	}
	if p.buf != nil {
		p.res.sure = p.res.v == needMore && surelyHeader(p.buf[:p.res.n])
	}
	*res = p.res
	p.drop()
	p.res = result{}
	peekerPool.Put(p)
	return true
}

func (p *peeker) drop() {
	if p.bufp != nil {
		bufPool.Put(p.bufp)
	}
	p.buf, p.bufp = nil, nil
}

// peek runs inside SyscallConn().Read: false waits for the socket to be
// readable again, true ends the peek.
func (p *peeker) peek(fd uintptr) bool {
	closed := false
	r := &p.res
	for {
		if p.buf == nil {
			p.bufp = bufPool.Get().(*[]byte)
			p.buf = *p.bufp
		}
		n, e := peek.Recv(fd, p.buf)
		switch e {
		case 0:
		case unix.EAGAIN:
			if r.n == 0 {
				p.drop() // silence holds no buffer while it waits
			}
			return false
		default:
			r.ioErr = os.NewSyscallError("recvfrom", e)
			return true
		}
		if n == 0 {
			r.eof = true
			return true
		}
		r.n = n
		hl, v, err := scan(p.buf[:n], p.max)
		r.hl, r.v = hl, v
		switch {
		case err != nil:
			r.err = err
			return true
		case v == notHeader:
			return true
		case v == complete:
			r.hdr, r.err = parseHeader(p.buf[:hl])
			if r.err == nil && p.pol != Reject {
				// The header's bytes are queued (they were just peeked):
				// reading exactly them cannot block or take more.
				if e := peek.Consume(fd, hl, p.buf); e != 0 {
					r.ioErr = os.NewSyscallError("read", e)
				}
			}
			return true
		}
		if hl > len(p.buf) {
			// A v2 header longer than the buffer: peek again into one it
			// fits.
			p.drop()
			p.buf = make([]byte, hl)
			continue
		}
		if closed {
			r.eof = true
			return true
		}
		switch state, errno := peek.PeerState(fd); state {
		case peek.FIN:
			// A FIN behind the peeked bytes (a peek cannot see it): peek
			// once more for bytes that came before it, then stop.
			closed = true
			continue
		case peek.Reset:
			r.ioErr = os.NewSyscallError("recvfrom", errno)
			return true
		}
		return false
	}
}
