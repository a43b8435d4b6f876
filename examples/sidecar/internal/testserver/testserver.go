// Package testserver starts loopback TCP servers for the sidecar's tests.
package testserver

import (
	"net"
	"net/netip"
	"testing"

	"github.com/sniffsplice/sniff/internal/testnet"
)

// Serve listens on 127.0.0.1, runs handle on each accepted connection in its own
// goroutine (closing the connection after handle returns) and returns the
// listener's address. The listener is closed and every handler waited for when
// the test ends (see testnet.Serve).
func Serve(tb testing.TB, handle func(net.Conn)) netip.AddrPort {
	tb.Helper()
	return testnet.Serve(tb, handle).Addr().(*net.TCPAddr).AddrPort()
}
