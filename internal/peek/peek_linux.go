//go:build linux

package peek

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Available reports whether the primitives work on this system.
const Available = true

// Recv copies up to len(b) queued bytes of socket fd into b without
// consuming them: recvfrom(MSG_PEEK|MSG_DONTWAIT), retried on EINTR. It
// returns the byte count (0 with errno 0 means the peer closed with nothing
// queued), or unix.EAGAIN when nothing is queued, or another errno. b must
// not be empty.
func Recv(fd uintptr, b []byte) (int, unix.Errno) {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd,
			uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), 0
	}
}

// Consume reads and discards exactly n bytes that a peek has already seen
// queued on socket fd (so the reads cannot block), with buf as scratch
// space (it must not be empty). It returns an errno if a read fails or the
// queue turns out to hold fewer bytes.
func Consume(fd uintptr, n int, buf []byte) unix.Errno {
	for n > 0 {
		k := min(n, len(buf))
		r, _, e := unix.Syscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(k))
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return e
		case r == 0:
			return unix.EPIPE // the queue held fewer bytes than peeked: cannot happen on TCP
		}
		n -= int(r)
	}
	return 0
}

// TCP states (include/net/tcp_states.h).
const (
	tcpTimeWait  = 6
	tcpClose     = 7
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// PeerState reports whether the TCP state of socket fd shows the peer's
// FIN or a reset, which MSG_PEEK cannot see behind queued bytes (a peek
// keeps returning them and no readiness edge comes for the FIN once it
// was consumed). Only the first byte of tcp_info (the state) is fetched.
// A connection in TCP_CLOSE with a pending socket error (ECONNRESET after
// an RST) is Reset with that errno; without one it is FIN. A failed
// getsockopt(TCP_INFO) says Open.
func PeerState(fd uintptr) (state int, errno unix.Errno) {
	var info [8]byte
	infoLen := uint32(1)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&infoLen)), 0)
	if e != 0 || infoLen < 1 {
		return Open, 0
	}
	switch info[0] {
	case tcpCloseWait, tcpLastAck, tcpClosing, tcpTimeWait:
		return FIN, 0
	case tcpClose:
		if errno := sockError(fd); errno != 0 {
			return Reset, errno
		}
		return FIN, 0
	}
	return Open, 0
}

// sockError fetches (and clears) the socket's pending error, SO_ERROR.
func sockError(fd uintptr) unix.Errno {
	var v [4]byte
	l := uint32(4)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_ERROR,
		uintptr(unsafe.Pointer(&v[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	if l != 4 {
		return 0
	}
	return unix.Errno(binary.NativeEndian.Uint32(v[:]))
}
