//go:build !linux

package transparent

import (
	"fmt"
	"net"
	"net/netip"
)

// OriginalDst needs Linux's SO_ORIGINAL_DST; elsewhere it always fails
// with an error wrapping ErrNoOriginalDst.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	if _, err := unwrapTCP(c); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPort{}, fmt.Errorf("%w: SO_ORIGINAL_DST needs Linux", ErrNoOriginalDst)
}
