package detect

import (
	"net"
	"syscall"

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
