// Package peek holds the MSG_PEEK primitives that package detect and
// package proxyproto share: a non-blocking recv(MSG_PEEK) on a socket, and
// the TCP state check that tells whether the peer's FIN (or a reset) sits
// behind bytes a peek keeps returning. Both are called from inside
// (*net.TCPConn).SyscallConn().Read, so the runtime's poller does the
// waiting and honours the connection's read deadline.
package peek

// What the socket's TCP state says about the peer (PeerState).
const (
	Open  = iota // more bytes may come
	FIN          // the peer sent its FIN: no more bytes will come
	Reset        // the connection is closed: reset, or failed
)
