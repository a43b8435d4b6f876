package detect

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// phases of a detection.
const (
	phaseMatch       = iota // running the matchers
	phaseGRPCPassive        // HTTP/2 matched; looking for the first HEADERS
	phaseGRPCActive         // HTTP/2 matched; SETTINGS written; looking for the first HEADERS
)

// why a fill loop stopped.
const (
	stopNone  = iota
	stopDone  // step said finished
	stopEOF   // peer closed
	stopLimit // buffer full
	stopDL    // read deadline
	stopErr   // other read error (s.err)
)

// session is the pooled state of one Detect call.
type session struct {
	matchers []Matcher
	max      int
	buf      []byte   // peeked bytes; nil until the first bytes arrive
	bufp     *[]byte  // where buf came from in bufPool (nil: not pooled)
	n        int      // bytes in buf
	small    [64]byte // first read on the reading path, so silence holds no buf
	res      Result
	dead     uint64 // matchers (first 64) that said NoMatch
	phase    int
	stop     int
	err      error

	// gRPC refinement
	h2           h2Scan
	settingsSent bool // active mode wrote its SETTINGS: filter the client's ACK

	// Linux peek state (see peek_linux.go)
	peekFn func(fd uintptr) bool
}

var sessionPool = sync.Pool{New: func() any {
	s := &session{}
	s.peekFn = s.peek
	return s
}}

// bufPool holds peek buffers of DefaultMaxPeek bytes. A detection takes one only once bytes have
// arrived, so a silent connection holds none.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, DefaultMaxPeek)
	return &b
}}

// grab makes s.buf a buffer of at least s.max bytes.
func (s *session) grab() {
	if s.buf != nil {
		return
	}
	if s.max <= DefaultMaxPeek {
		s.bufp = bufPool.Get().(*[]byte)
		s.buf = *s.bufp
		return
	}
	s.buf = make([]byte, s.max)
}

// drop returns the peek buffer to the pool.
func (s *session) drop() {
	if s.bufp != nil {
		bufPool.Put(s.bufp)
	}
	s.buf, s.bufp = nil, nil
}

func getSession(d *Detector) *session {
	s := sessionPool.Get().(*session)
	s.matchers = d.Matchers
	if s.matchers == nil {
		s.matchers = defaultMatchers
	}
	s.max = d.MaxPeek
	if s.max <= 0 {
		s.max = DefaultMaxPeek
	}
	return s
}

func putSession(s *session) {
	s.drop()
	s.matchers = nil
	s.n = 0
	s.res = Result{}
	s.dead = 0
	s.phase = phaseMatch
	s.stop = stopNone
	s.err = nil
	s.h2 = h2Scan{}
	s.settingsSent = false
	sessionPool.Put(s)
}

var defaultMatchers = DefaultMatchers()

// match runs the matchers over the peeked bytes; it reports whether the result is decided.
func (s *session) match() bool {
	b := s.buf[:s.n]
	for i, m := range s.matchers {
		if i < 64 && s.dead&(1<<uint(i)) != 0 {
			continue
		}
		switch m.Match(b, &s.res) {
		case Match:
			s.res.Protocol = m.Protocol()
			s.res.Reason = ReasonMatched
			return true
		case NoMatch:
			if i < 64 {
				s.dead |= 1 << uint(i)
			}
		default:
			return false // an earlier matcher has priority: wait for it
		}
	}
	s.res.Protocol = Unknown
	s.res.Reason = ReasonNoMatch
	return true
}

// step evaluates the bytes peeked so far; it reports whether the current phase is finished.
func (s *session) step() bool {
	switch s.phase {
	case phaseMatch:
		return s.match()
	default: // phaseGRPCPassive, phaseGRPCActive
		s.h2.scan(s.buf[:s.n])
		return s.h2.headers || s.h2.failed
	}
}

// readFill reads (consuming) from c into the buffer until step says done, the peer closes, the
// buffer fills, the deadline passes or an error.
func (s *session) readFill(c net.Conn) {
	zero := 0
	for {
		if s.n >= s.max {
			s.stop = stopLimit
			return
		}
		var n int
		var err error
		if s.buf == nil {
			// Wait for the first bytes without holding a peek buffer.
			n, err = c.Read(s.small[:min(len(s.small), s.max)])
			if n > 0 {
				s.grab()
				copy(s.buf, s.small[:n])
			}
		} else {
			n, err = c.Read(s.buf[s.n:s.max])
		}
		if n > 0 {
			zero = 0
			s.n += n
			if s.step() {
				s.stop = stopDone
				return
			}
		}
		switch {
		case err == nil:
			if n == 0 {
				if zero++; zero > 100 {
					s.stop, s.err = stopErr, ErrNoProgress
					return
				}
			}
		case errors.Is(err, io.EOF):
			s.stop = stopEOF
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.stop = stopDL
			return
		default:
			s.stop, s.err = stopErr, err
			return
		}
	}
}

// deadlines sets and clears the connection deadlines Detect uses. With a cancellable ctx, a
// heap-allocated guard serialises them with the context.AfterFunc that interrupts blocked reads;
// without one nothing is allocated.
type deadlines struct {
	c        net.Conn
	g        *ctxGuard // nil without a cancellable ctx
	touched  bool      // a read deadline was set
	wtouched bool      // a write deadline was set
}

// ctxGuard is shared with the context.AfterFunc callback.
type ctxGuard struct {
	c         net.Conn
	mu        sync.Mutex
	cancelled bool // ctx fired
	finished  bool // Detect is done with the conn
}

// aLongTimeAgo is a deadline in the past that makes blocked I/O return.
var aLongTimeAgo = time.Unix(1, 0)

func (g *ctxGuard) fire() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.finished {
		return
	}
	g.cancelled = true
	_ = g.c.SetReadDeadline(aLongTimeAgo)
	_ = g.c.SetWriteDeadline(aLongTimeAgo)
}

func (d *deadlines) setRead(t time.Time) {
	d.touched = true
	d.set(t, false)
}

func (d *deadlines) setWrite(t time.Time) {
	d.wtouched = true
	d.set(t, true)
}

// set sets the read or write deadline, unless ctx has fired: then the guard's deadline in the past
// must stay.
func (d *deadlines) set(t time.Time, write bool) {
	if d.g != nil {
		d.g.mu.Lock()
		defer d.g.mu.Unlock()
		if d.g.cancelled {
			return
		}
	}
	if write {
		_ = d.c.SetWriteDeadline(t)
	} else {
		_ = d.c.SetReadDeadline(t)
	}
}

// finish clears the deadlines Detect set; it reports whether ctx fired.
func (d *deadlines) finish() (cancelled bool) {
	if d.g != nil {
		d.g.mu.Lock()
		defer d.g.mu.Unlock()
		d.g.finished = true
		cancelled = d.g.cancelled
	}
	if d.touched || cancelled {
		_ = d.c.SetReadDeadline(time.Time{})
	}
	if d.wtouched || cancelled {
		_ = d.c.SetWriteDeadline(time.Time{})
	}
	return cancelled
}

// Detect reads the first bytes c sends and classifies them. It returns the Result and a connection
// from which the caller reads every byte the peer sent, the examined ones included, exactly once.
//
// On Linux, for a *net.TCPConn, Detect peeks with recv(MSG_PEEK) and returns c itself: nothing is
// consumed, so splice(2), CloseWrite and socket options keep working. For any other connection (or
// in gRPC active mode) it reads into a pooled buffer and returns a [*ReplayConn]; when nothing was
// consumed it returns c.
//
// Detection ends as soon as the matchers decide; only silence waits. When the timeout (the
// Detector's, or the call's [WithTimeout]) fires, the Result is Protocol Unknown with Reason
// ReasonTimeout and the error is nil: the connection is not closed and stays usable. When the peer
// closes first the Reason is ReasonClosed and the returned connection still replays what it sent.
//
// The error is non-nil only when ctx is done before a decision (ctx.Err()) or the connection fails;
// the returned connection is then still non-nil and the caller should close it. A peer that resets
// the connection during detection is such a failure, reported at once (errors.Is(err,
// syscall.ECONNRESET) on Linux and POSIX systems), on the MSG_PEEK path too, where the peeked bytes
// hide the reset from recv.
//
// Detect uses the connection's read deadline (and write deadline in gRPC active mode) when a
// timeout or a cancellable ctx is given, and clears them before it returns.
func (d *Detector) Detect(ctx context.Context, c net.Conn, opts ...Option) (Result, net.Conn, error) {
	start := time.Now()
	timeout := d.callTimeout(opts)
	s := getSession(d)
	out, err := d.detect(ctx, c, s, start, timeout)
	if d.OnResult != nil {
		// The hook sees the session's Result in place: no copy of it, and no allocation (the
		// session is pooled). It is valid only during the call, as OnResult documents.
		d.OnResult(&s.res)
	}
	res := s.res
	putSession(s)
	return res, out, err
}

// detect runs one detection and leaves its final Result in s.res.
func (d *Detector) detect(ctx context.Context, c net.Conn, s *session, start time.Time, timeout time.Duration) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		s.res = errResult(start, 0, err)
		return c, err
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = start.Add(timeout)
	}

	// Deadlines: one per Detect, allocated only when ctx can be cancelled.
	dl := &deadlines{c: c}
	if ctx.Done() != nil {
		g := &ctxGuard{c: c}
		stop := context.AfterFunc(ctx, g.fire)
		defer stop()
		dl.g = g
	}
	if !deadline.IsZero() {
		dl.setRead(deadline)
	}

	consumed := false
	if len(s.matchers) == 0 {
		s.res.Protocol, s.res.Reason = Unknown, ReasonNoMatch
		s.stop = stopDone
	} else if !peekConn(s, c) {
		s.readFill(c)
		consumed = true
	}

	// gRPC refinement.
	if s.stop == stopDone && s.res.Protocol == HTTP2 && s.res.Reason == ReasonMatched && d.GRPC != GRPCOff {
		consumed = d.refineGRPC(s, c, dl, deadline, consumed) || consumed
	}

	cancelled := dl.finish()
	if s.stop == stopDL && (cancelled || ctx.Err() != nil) {
		err := ctx.Err()
		if err == nil {
			err = context.Canceled
		}
		s.res = errResult(start, s.n, err)
		return d.handBack(s, c, consumed), err
	}
	switch s.stop {
	case stopErr:
		s.res = errResult(start, s.n, s.err)
		return d.handBack(s, c, consumed), s.err
	case stopEOF:
		if s.phase == phaseMatch {
			s.res.Protocol, s.res.Reason = Unknown, ReasonClosed
		}
	case stopLimit:
		if s.phase == phaseMatch {
			s.res.Protocol, s.res.Reason = Unknown, ReasonLimit
		}
	case stopDL:
		if s.phase == phaseMatch {
			s.res.Protocol, s.res.Reason = Unknown, ReasonTimeout
		}
	}
	if s.phase != phaseMatch && s.h2.grpc {
		s.res.Protocol = GRPC
	}
	s.res.Bytes = s.n
	s.res.Duration = time.Since(start)
	return d.handBack(s, c, consumed), nil
}

// handBack returns the connection to give the caller.
func (d *Detector) handBack(s *session, c net.Conn, consumed bool) net.Conn {
	if s.settingsSent {
		// The client's ACK of our SETTINGS must not reach the server, whether it is among the
		// consumed bytes or still to come.
		var b []byte
		if s.n > 0 {
			b = append([]byte(nil), s.buf[:s.n]...)
		}
		return newFilteringReplayConn(c, b)
	}
	if !consumed || s.n == 0 {
		return c
	}
	return NewReplayConn(c, append([]byte(nil), s.buf[:s.n]...))
}

func errResult(start time.Time, n int, err error) Result {
	r := Result{Protocol: Unknown, Reason: ReasonClosed, Bytes: n, Duration: time.Since(start)}
	if errors.Is(err, context.DeadlineExceeded) {
		r.Reason = ReasonTimeout
	}
	return r
}
