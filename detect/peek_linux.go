//go:build linux

package detect

import (
	"errors"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sniffsplice/sniff/internal/peek"
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
		n, e := peek.Recv(fd, s.buf[:s.max])
		switch e {
		case 0:
		case unix.EAGAIN:
			if s.n == 0 {
				s.drop() // silence holds no buffer while it waits
			}
			return false
		default:
			s.stop, s.err = stopErr, os.NewSyscallError("recvfrom", e)
			return true
		}
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
		switch state, errno := peek.PeerState(fd); state {
		case peek.FIN:
			// A FIN behind the peeked bytes: no more will come. Bytes
			// that arrived before it, after the peek above, are queued
			// now: peek once more before deciding.
			closed = true
			continue
		case peek.Reset:
			// The connection was reset (or otherwise failed) behind the
			// peeked bytes; recv(MSG_PEEK) keeps returning them and no
			// more will come. s.err is the socket's error.
			s.stop, s.err = stopErr, os.NewSyscallError("recvfrom", errno)
			return true
		}
		return false
	}
}
