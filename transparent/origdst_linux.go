//go:build linux

package transparent

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h.
const ip6tSOOriginalDst = 80

// OriginalDst returns the destination a connection had before an iptables
// REDIRECT (or DNAT) rule sent it to this listener: getsockopt
// SO_ORIGINAL_DST on an IPv4 connection (also one that arrived
// IPv4-mapped on a dual-stack socket), IP6T_SO_ORIGINAL_DST on an IPv6
// one. IPv4 addresses come back as 4-byte addresses. c must be the
// *net.TCPConn the listener accepted, or unwrap to it through NetConn.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	tc, err := unwrapTCP(c)
	if err != nil {
		return netip.AddrPort{}, err
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %w", ErrNoOriginalDst, err)
	}
	local, _ := tc.LocalAddr().(*net.TCPAddr)
	v6 := local != nil && local.IP.To4() == nil
	var ap netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			// struct sockaddr_in6 fits in IPv6MTUInfo (sockaddr_in6 + u32).
			info, e := unix.GetsockoptIPv6MTUInfo(int(fd), unix.IPPROTO_IPV6, ip6tSOOriginalDst)
			if e != nil {
				serr = fmt.Errorf("getsockopt IP6T_SO_ORIGINAL_DST: %w", e)
				return
			}
			p := info.Addr.Port // network byte order in memory
			port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p))[:])
			ap = netip.AddrPortFrom(netip.AddrFrom16(info.Addr.Addr), port)
			return
		}
		// struct sockaddr_in fits in the 16 bytes of an IPv6Mreq.
		m, e := unix.GetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IP, unix.SO_ORIGINAL_DST)
		if e != nil {
			serr = fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", e)
			return
		}
		b := m.Multiaddr
		port := binary.BigEndian.Uint16(b[2:4])
		ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), port)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %w", ErrNoOriginalDst, err)
	}
	return ap, nil
}
