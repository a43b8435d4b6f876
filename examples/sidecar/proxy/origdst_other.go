//go:build !linux

package proxy

import (
	"fmt"
	"net"
	"net/netip"
)

// OriginalDst needs Linux's SO_ORIGINAL_DST; elsewhere it always fails.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, fmt.Errorf("%w: transparent mode needs Linux", ErrNoOriginalDst)
}
