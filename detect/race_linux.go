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

// peekNow copies into b the bytes c has ready to read, without consuming or waiting, when c is a
// *net.TCPConn or *net.UnixConn (ok == true). ready reports that a Read would not block: bytes, EOF
// or a socket error are there.
func peekNow(c net.Conn, b []byte) (n int, ready, ok bool) {
	var sc syscall.Conn
	switch c := c.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return 0, false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false, false
	}
	var perr error
	if err := rc.Control(func(fd uintptr) {
		n, _, perr = unix.Recvfrom(int(fd), b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil {
		return 0, false, false
	}
	if perr != nil {
		return 0, perr != unix.EAGAIN && perr != unix.EINTR, true
	}
	return n, true, true
}
