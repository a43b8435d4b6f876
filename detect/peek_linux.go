//go:build linux

package detect

import (
	"errors"
	"net"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peekConn runs the fill loop with recv(MSG_PEEK) when c is a *net.TCPConn,
// consuming nothing. It reports false when c needs the reading path.
func peekConn(s *session, c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	s.stop = stopNone
	if err := rc.Read(s.peekFn); err != nil && s.stop == stopNone {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.stop = stopDL
		} else {
			s.stop, s.err = stopErr, err
		}
	}
	return true
}

// peek is called by the runtime poller with the socket; it returns false to
// wait for the next segment (or FIN), true when the fill loop is over.
func (s *session) peek(fd uintptr) bool {
	closed := false
	for {
		s.grab()
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd,
			uintptr(unsafe.Pointer(&s.buf[0])), uintptr(s.max),
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if s.n == 0 {
				s.drop() // silence holds no buffer while it waits
			}
			return false
		default:
			s.stop, s.err = stopErr, os.NewSyscallError("recvfrom", e)
			return true
		}
		n := int(r)
		if n == 0 {
			s.stop = stopEOF
			return true
		}
		if n != s.n {
			s.n = n
			if s.step() {
				s.stop = stopDone
				return true
			}
		}
		if n >= s.max {
			s.stop = stopLimit
			return true
		}
		if closed {
			s.stop = stopEOF
			return true
		}
		if s.peerClosed(fd) {
			// A FIN behind the peeked bytes: no more will come. Bytes
			// that arrived before it, after the peek above, are queued
			// now: peek once more before deciding.
			closed = true
			continue
		}
		return false
	}
}

// TCP states in which the peer has sent its FIN.
const (
	tcpTimeWait  = 6
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// peerClosed reports whether the socket's TCP state shows the peer's FIN,
// which MSG_PEEK cannot see behind data. Only the first byte of tcp_info
// (the state) is fetched.
func (s *session) peerClosed(fd uintptr) bool {
	s.infoLen = 1
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&s.tcpInfo[0])), uintptr(unsafe.Pointer(&s.infoLen)), 0)
	if e != 0 || s.infoLen < 1 {
		return false
	}
	switch s.tcpInfo[0] {
	case tcpCloseWait, tcpLastAck, tcpClosing, tcpTimeWait:
		return true
	}
	return false
}
