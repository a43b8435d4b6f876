//go:build !linux

package detect

import "net"

// peekReady reports ok == false: outside Linux every connection takes the read-one-byte path.
func peekReady(net.Conn) (ok bool, err error) { return false, nil }

// peekNow reports ok == false outside Linux.
func peekNow(net.Conn, int) (b [peekNowMax]byte, n int, ready, ok bool) { return b, 0, false, false }
