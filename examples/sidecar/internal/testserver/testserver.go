// Package testserver starts loopback TCP servers for the sidecar's tests.
package testserver

import (
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Serve listens on 127.0.0.1, runs handle on each accepted connection in its own
// goroutine (closing the connection after handle returns) and returns the
// listener's address. The listener is closed and every handler waited for when
// the test ends.
func Serve(tb testing.TB, handle func(net.Conn)) netip.AddrPort {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	tb.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().(*net.TCPAddr).AddrPort()
}
