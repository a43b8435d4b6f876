package transparent_test

import (
	"context"
	"net"

	"github.com/sniffsplice/sniff/transparent"
)

// A transparent outbound proxy: iptables redirects every outbound TCP
// connection to its listener; it connects to where each client was going.
func ExampleOriginalDst() {
	ln, err := net.Listen("tcp", "127.0.0.1:4140") // iptables ... -j REDIRECT --to-ports 4140
	if err != nil {
		return
	}
	defer ln.Close()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			dst, err := transparent.OriginalDst(c)
			if err != nil {
				return // not redirected: nowhere to go
			}
			var d net.Dialer
			up, err := d.DialContext(context.Background(), "tcp", dst.String())
			if err != nil {
				return
			}
			defer up.Close()
			// ... detect, then splice c and up.
		}()
	}
}
