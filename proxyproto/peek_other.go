//go:build !linux

package proxyproto

import "net"

// peekHeader reports false: without Linux's MSG_PEEK support every
// connection takes the reading path.
func peekHeader(c net.Conn, max int, pol Policy, res *result) bool { return false }
