package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// tcpEstablished is Linux's TCP_ESTABLISHED state (include/net/tcp_states.h).
const tcpEstablished = 1

// clientGone reports whether the peer of c has gone: its connection reset,
// or closed with nothing more to read (a peek that does not wait, as
// net/http's background read finds an EOF). A plain connection with bytes
// waiting (a pipelined request) is not gone yet. Over TLS (tls), bytes
// waiting followed by the peer's FIN are its close_notify (encrypted in TLS
// 1.3, so not told from data by a peek): a TLS client closing while its
// answer is awaited is gone.
func clientGone(c *net.TCPConn, tls bool) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	cerr := rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
		case err != nil:
			gone = true // reset, or no longer a connected socket
		case n == 0:
			gone = true // end of stream
		case tls:
			ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			gone = err != nil || ti.State != tcpEstablished
		}
	})
	return gone || cerr != nil
}
