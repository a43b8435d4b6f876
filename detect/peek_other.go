//go:build !linux

package detect

import "net"

// peekConn reports false: without Linux MSG_PEEK support every connection
// takes the reading path.
func peekConn(s *session, c net.Conn) bool { return false }

func (s *session) peek(fd uintptr) bool { return true }
