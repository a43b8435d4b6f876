package transparent

import (
	"errors"
	"fmt"
	"net"
)

// ErrNoOriginalDst is the error kind of OriginalDst: the connection has no
// original destination to read (not TCP, not redirected, not Linux). The
// error returned wraps it and, when the kernel said why, the errno
// (errors.Is(err, syscall.ENOENT) when connection tracking has no entry).
var ErrNoOriginalDst = errors.New("transparent: no original destination")

// netConner is a connection that wraps another (a replaying conn, a
// *tls.Conn).
type netConner interface{ NetConn() net.Conn }

// unwrapTCP finds the *net.TCPConn under c through NetConn methods; when
// there is none it returns an error naming the connection at the bottom.
func unwrapTCP(c net.Conn) (*net.TCPConn, error) {
	for range 16 {
		switch v := c.(type) {
		case *net.TCPConn:
			return v, nil
		case netConner:
			c = v.NetConn()
		default:
			return nil, fmt.Errorf("%w: %T is not a TCP connection", ErrNoOriginalDst, c)
		}
	}
	return nil, fmt.Errorf("%w: %T wraps too deep", ErrNoOriginalDst, c)
}
