package detect

import (
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peekReady waits, without consuming anything, until c has a byte or EOF to read, when c is a
// *net.TCPConn or *net.UnixConn (ok == true). It honours c's read deadline. err is nil for data or
// EOF, the socket error (ECONNRESET...) or the deadline error otherwise.
func peekReady(c net.Conn) (ok bool, err error) {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, nil
	}
	var b [1]byte
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, perr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return perr != unix.EAGAIN && perr != unix.EINTR
	})
	if err != nil {
		return true, err
	}
	return true, perr
}

// nowPeeker holds what one non-blocking peek needs, so that peekNow allocates nothing: the
// callback handed to RawConn.Control is a method value made once per pooled peeker.
type nowPeeker struct {
	buf [peekNowMax]byte
	n   int // bytes asked for
	r   uintptr
	e   syscall.Errno
	fn  func(fd uintptr)
}

func (p *nowPeeker) peek(fd uintptr) {
	p.r, _, p.e = unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p.buf[0])), uintptr(p.n),
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
}

var nowPeekers = sync.Pool{New: func() any {
	p := &nowPeeker{}
	p.fn = p.peek
	return p
}}

// peekNow returns up to want (at most peekNowMax) of the bytes c has ready to read, without
// consuming or waiting, when c is a *net.TCPConn or *net.UnixConn (ok == true). ready reports that a
// Read would not block: bytes, EOF or a socket error are there. It allocates nothing.
func peekNow(c net.Conn, want int) (b [peekNowMax]byte, n int, ready, ok bool) {
	var rc syscall.RawConn
	var err error
	switch c := c.(type) {
	case *net.TCPConn:
		rc, err = c.SyscallConn()
	case *net.UnixConn:
		rc, err = c.SyscallConn()
	default:
		return b, 0, false, false
	}
	if err != nil {
		return b, 0, false, false
	}
	p := nowPeekers.Get().(*nowPeeker)
	p.n = min(max(want, 1), peekNowMax)
	err = rc.Control(p.fn)
	b, r, e := p.buf, p.r, p.e
	nowPeekers.Put(p)
	if err != nil {
		return b, 0, false, false
	}
	if e != 0 {
		return b, 0, e != unix.EAGAIN && e != unix.EINTR, true
	}
	return b, int(r), true, true
}
