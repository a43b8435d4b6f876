// Package testnet holds the loopback servers the module's tests share: an
// accept loop whose handlers are all waited for when the test ends (so
// goleak sees no server goroutine left), and an echo of fixed-size messages
// for request/response benchmarks.
package testnet

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Serve listens on 127.0.0.1 (an ephemeral port) and runs handle on every
// accepted connection in its own goroutine, closing the connection after
// handle returns. When the test ends the listener is closed and Serve waits
// for the accept loop and every handler to return. The caller may close the
// returned listener earlier to stop accepting; the handlers are still
// waited for at the end of the test.
func Serve(tb testing.TB, handle func(net.Conn)) net.Listener {
	tb.Helper()
	return ServeOn(tb, "127.0.0.1:0", handle)
}

// ServeOn is Serve on a TCP address of the caller's choice, such as
// "[::1]:0".
func ServeOn(tb testing.TB, address string, handle func(net.Conn)) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", address)
	if err != nil {
		tb.Fatalf("testnet: listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln
}

// EchoMessages reads size-byte messages from c and writes each one back,
// until a read or write fails (typically EOF when the peer closes).
func EchoMessages(c net.Conn, size int) {
	buf := make([]byte, size)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}
