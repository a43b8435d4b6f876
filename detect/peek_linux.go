//go:build linux

package detect

import (
	"encoding/binary"
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
		switch s.peerState(fd) {
		case peerFIN:
			// A FIN behind the peeked bytes: no more will come. Bytes
			// that arrived before it, after the peek above, are queued
			// now: peek once more before deciding.
			closed = true
			continue
		case peerReset:
			// The connection was reset (or otherwise failed) behind the
			// peeked bytes; recv(MSG_PEEK) keeps returning them and no
			// more will come. s.err is the socket's error.
			s.stop = stopErr
			return true
		}
		return false
	}
}

// TCP states (include/net/tcp_states.h).
const (
	tcpTimeWait  = 6
	tcpClose     = 7
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// What the socket's TCP state says about the peer.
const (
	peerOpen  = iota // more bytes may come
	peerFIN          // the peer sent its FIN
	peerReset        // the connection is closed: reset, or failed (s.err)
)

// peerState reports whether the socket's TCP state shows the peer's FIN or
// a reset, which MSG_PEEK cannot see behind data. Only the first byte of
// tcp_info (the state) is fetched. A connection in TCP_CLOSE with a
// pending socket error (ECONNRESET after an RST) is peerReset with s.err
// set; without one it is peerFIN.
func (s *session) peerState(fd uintptr) int {
	s.infoLen = 1
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&s.tcpInfo[0])), uintptr(unsafe.Pointer(&s.infoLen)), 0)
	if e != 0 || s.infoLen < 1 {
		return peerOpen
	}
	switch s.tcpInfo[0] {
	case tcpCloseWait, tcpLastAck, tcpClosing, tcpTimeWait:
		return peerFIN
	case tcpClose:
		if errno := s.sockError(fd); errno != 0 {
			s.err = os.NewSyscallError("recvfrom", errno)
			return peerReset
		}
		return peerFIN
	}
	return peerOpen
}

// sockError fetches (and clears) the socket's pending error, SO_ERROR.
func (s *session) sockError(fd uintptr) unix.Errno {
	s.infoLen = 4 // an int, in the session's tcp_info scratch space
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_ERROR,
		uintptr(unsafe.Pointer(&s.tcpInfo[0])), uintptr(unsafe.Pointer(&s.infoLen)), 0)
	if e != 0 {
		return e
	}
	if s.infoLen != 4 {
		return 0
	}
	return unix.Errno(binary.NativeEndian.Uint32(s.tcpInfo[:4]))
}
