package proxy

import (
	"net"
	"time"
)

// Parking: an HTTP/1.1 keep-alive connection idle past h1Linger waits for
// its next request in its listener's detect.Waiter, without a goroutine or a
// read buffer, so that an idle client costs its socket and a few hundred
// bytes (issue 17). It needs the listener (ServeOutbound, ServeInbound: the
// connection came through the proxy's lifecycle) and a plain TCP connection;
// otherwise the connection waits on its goroutine, as before.
//
// serveHTTP returns with Event.parked set when the connection parks; the
// handler that called it returns as for any connection, and its emit hands
// the event to parkEvent instead of OnEvent. From then on the connection is
// carried by the Waiter's ready callbacks, counted among the listener's
// handlers (a drain waits for a request in flight; the Waiter's close at the
// end of the listener ends the connections still parked), and its event is
// emitted when it ends, with the bytes and the time of its whole life.

// listenerKey is the context key under which a listener's connections find
// it (newListener).
type listenerKey struct{}

// parkEvent takes the event of a connection that has parked (from emit), and
// hands the connection to the Waiter.
func (s *h1Server) parkEvent(ev Event) {
	// s.ev is the handler's own Event (it escaped to the heap when
	// serveHTTP took its address), which no one touches once the handler
	// has emitted it: the connection keeps it, with the Duration so far.
	ev.parked = nil
	*s.ev = ev
	s.parkedAt = time.Now()
	s.park()
}

func (s *h1Server) park() {
	s.p.http.parks.Add(1)
	s.wait.handlers.Add(1)
	s.wait.wait.Wait(s.c, httpIdleTimeout-h1Linger, s.resume)
}

// resume carries the connection again, on the Waiter's goroutine for it:
// when it has something to read, from its next request on; otherwise (idle
// timeout, shed, the listener closing) it ends.
func (s *h1Server) resume(c net.Conn, err error) {
	defer s.wait.handlers.Done()
	if err != nil {
		c.Close()
		s.end()
		return
	}
	switch s.serve(false) {
	case h1Parked:
		s.park()
		return
	case h1Handoff:
		s.handoff()
	}
	s.end()
}

// handoff serves the rest of the connection through net/http.
func (s *h1Server) handoff() {
	s.p.http.handoffs.Add(1)
	r, w := s.p.serveNetHTTP(s.ctx, s.c, s.rest(), s.target, s.t, s.dir, s.clientID, s.mc)
	s.read += r
	s.written += w
}

// end completes and emits the event of a connection that had parked.
func (s *h1Server) end() {
	ev := s.ev
	ev.ClientBytes, ev.ServerBytes = s.read, s.written
	ev.Duration += time.Since(s.parkedAt)
	s.p.endHTTP(ev, s.t, s.mc, s.firstErr)
	s.p.emit(*ev)
}
