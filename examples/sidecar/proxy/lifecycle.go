package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sniffsplice/sniff/accept"
	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/opaque"
)

// DefaultMaxHandshakes is the most mutual-TLS handshakes to peers a Proxy runs at once when
// Proxy.MaxHandshakes is 0; more wait (within the dial timeout) for one to end.
const DefaultMaxHandshakes = 128

// listener is one Serve* call's share of the connection lifecycle: the Waiter its silent
// connections wait in (no goroutine each) and the handlers it started.
type listener struct {
	p        *Proxy
	dir      opaque.Direction
	connCtx  context.Context // ends every connection of the listener
	wait     detect.Waiter   // accepted connections waiting for their first bytes
	idle     detect.Waiter   // HTTP/1.1 keep-alive connections parked between requests (park.go)
	handlers sync.WaitGroup
	draining atomic.Bool   // accepting has ended: HTTP/1.1 answers say Connection: close
	drained  chan struct{} // closed when draining is set: net/http's servers shut down
}

func (p *Proxy) newListener(connCtx context.Context, dir opaque.Direction) *listener {
	s := &listener{
		p:       p,
		dir:     dir,
		wait:    detect.Waiter{Max: p.MaxWaiting, ParkKeeps: true}, // a silent connection goes on when its wait ends
		idle:    detect.Waiter{Max: p.MaxIdle, DetachAfter: p.IdleDetachAfter},
		drained: make(chan struct{}),
	}
	s.connCtx = context.WithValue(connCtx, listenerKey{}, s) // an idle HTTP/1.1 connection parks in s.idle (park.go)
	p.waitMu.Lock()
	if p.listeners == nil {
		p.listeners = make(map[*listener]struct{})
	}
	p.listeners[s] = struct{}{}
	p.waitMu.Unlock()
	return s
}

// WaitStats are the counts of a Proxy's detect.Waiters, summed over its listeners (those
// serving now and those that have ended).
type WaitStats struct {
	// FirstBytes: accepted connections waiting for their first bytes, without a goroutine
	// each (Proxy.MaxWaiting per listener).
	FirstBytes detect.WaitStats
	// Idle: HTTP/1.1 keep-alive connections parked between requests (Proxy.MaxIdle per
	// listener); Detached counts the waits that went on as a bare descriptor
	// (Proxy.IdleDetachAfter).
	Idle detect.WaitStats
}

// WaitStats returns the counts of the proxy's Waiters.
func (p *Proxy) WaitStats() WaitStats {
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	st := WaitStats{FirstBytes: p.waitEnded[0], Idle: p.waitEnded[1]}
	for s := range p.listeners {
		st.FirstBytes = st.FirstBytes.Add(s.wait.Stats())
		st.Idle = st.Idle.Add(s.idle.Stats())
	}
	return st
}

// ended folds the counts of a listener that has served its last connection into the proxy's.
func (s *listener) ended() {
	p := s.p
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	delete(p.listeners, s)
	p.waitEnded[0] = p.waitEnded[0].Add(s.wait.Stats())
	p.waitEnded[1] = p.waitEnded[1].Add(s.idle.Stats())
}

// serve accepts from l until acceptCtx ends (descriptor exhaustion and the like are waited
// out: accept.Loop's rule), passing every connection to admit on the accept goroutine; admit
// must not block. Then it closes the Waiters (the connections still silent, and the HTTP/1.1
// connections parked between requests, are closed), tells the HTTP/1.1 connections still running
// to end after their request in flight (Connection: close, as net/http's Shutdown does) and waits
// for every handler; connCtx ends them. It returns nil once acceptCtx has ended.
func (s *listener) serve(acceptCtx context.Context, l net.Listener, admit func(net.Conn)) error {
	err := accept.Serve(acceptCtx, l, admit)
	if acceptCtx.Err() != nil {
		err = nil
	}
	s.draining.Store(true)
	close(s.drained)
	s.wait.Close()
	s.idle.Close()
	s.handlers.Wait()
	s.ended()
	return err
}

// goHandle runs handle on a goroutine of its own, counted until it returns.
func (s *listener) goHandle(handle func()) {
	s.handlers.Add(1)
	go func() {
		defer s.handlers.Done()
		handle()
	}()
}

// waitThen hands c to the Waiter for at most timeout; then, on a goroutine of its own and
// counted like a handler, then runs with what the Waiter said (nil: c has something to read).
// A closed Waiter (the listener is stopping) closes c instead. c is parked (detect.Waiter.Park):
// past the Waiter's DetachAfter a silent client is held as its descriptor alone, and then gets
// c made again; when that fails (no descriptor to spare), the Waiter has closed the socket and
// the connection ends with an event.
func (s *listener) waitThen(c net.Conn, timeout time.Duration, then func(net.Conn, error)) {
	s.handlers.Add(1)
	start := time.Now()
	s.wait.Park(c, timeout, func(c net.Conn, err error) {
		defer s.handlers.Done()
		if err != nil && (s.connCtx.Err() != nil || isWaiterClosed(err)) {
			if c != nil {
				c.Close()
			}
			return
		}
		if c == nil {
			s.lost(start, err)
			return
		}
		then(c, err)
	})
}

// lost reports a parked connection that could not be made again. It is a frame of its own, not
// inlined, so that the Event it builds is not in waitThen's callback frame, which stays on the
// connection's stack while it is served (TestServingStackDepth).
//
//go:noinline
func (s *listener) lost(start time.Time, err error) {
	s.p.emit(&Event{Direction: s.dir, Protocol: detect.Unknown, Duration: time.Since(start), Err: err})
}

func isWaiterClosed(err error) bool { return errors.Is(err, detect.ErrWaiterClosed) }

// handshakeSlot takes one of the MaxHandshakes slots for a handshake to a peer, waiting for one
// to free while ctx allows; release gives it back.
func (p *Proxy) handshakeSlot(ctx context.Context) (release func(), err error) {
	select {
	case p.hsSem <- struct{}{}:
		return func() { <-p.hsSem }, nil
	default:
	}
	p.hsWaits.Add(1)
	select {
	case p.hsSem <- struct{}{}:
		return func() { <-p.hsSem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// HandshakeStats are the counts of a Proxy's handshakes to peers.
type HandshakeStats struct {
	Running int    // in progress now (at most MaxHandshakes)
	Waited  uint64 // handshakes that waited for a slot
}

// Handshakes returns the counts of the proxy's handshakes to peers.
func (p *Proxy) Handshakes() HandshakeStats {
	return HandshakeStats{Running: len(p.hsSem), Waited: p.hsWaits.Load()}
}

// RaceStats returns the counts of the proxy's server-first races (see Proxy.Race).
func (p *Proxy) RaceStats() detect.RaceStats { return p.race.Stats() }
