//go:build !linux

package detect

import (
	"errors"
	"net"
)

// waitFD: only Linux has the Waiter's epoll set; elsewhere every connection is ready at once.
func waitFD(net.Conn) (int, bool) { return -1, false }

type waitPoller struct{}

func (*waitPoller) start(*Waiter) error          { return nil }
func (*waitPoller) add(int, int32, uint32) error { return nil }
func (*waitPoller) remove(int)                   {}
func (*waitPoller) wake()                        {}
func (*waitPoller) close() error                 { return nil }
func (*waitPoller) detach(int, int32, uint32) (int, error) {
	return -1, errors.ErrUnsupported
}

func closeFD(int) {}

func fdConn(int) (net.Conn, error) { return nil, errors.ErrUnsupported }
