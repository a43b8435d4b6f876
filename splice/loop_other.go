//go:build !linux

package splice

import (
	"context"
	"net"
	"net/netip"
)

// engine has no event loop outside Linux: every join goes to Joiner.Join.
type engine struct{}

func (e *engine) init(*Loop, int) error { return nil }

func (e *engine) start(_ *Loop, _ context.Context, a, b net.Conn, _ netip.AddrPort, _ Observer, _ func(Stats)) (bool, net.Conn, net.Conn, error) {
	return false, a, b, nil
}

func (e *engine) close() error { return nil }

func (e *engine) serve(l *Loop, ctx context.Context, ln *net.TCPListener, addr netip.AddrPort, obs Observer, done func(Stats)) error {
	return l.serveAccept(ctx, ln, addr, obs, done)
}
