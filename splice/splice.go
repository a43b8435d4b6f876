package splice

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Flow names one of the two flows of bytes of a join (not to be confused with a proxy's
// direction, opaque.Direction: inbound or outbound).
type Flow uint8

const (
	// AToB is the flow of bytes read from a and written to b.
	AToB Flow = iota
	// BToA is the flow of bytes read from b and written to a.
	BToA
)

// String returns "a_to_b" or "b_to_a".
func (d Flow) String() string {
	switch d {
	case AToB:
		return "a_to_b"
	case BToA:
		return "b_to_a"
	}
	return "unknown"
}

// Side names one of the two connections of a join.
type Side uint8

const (
	// SideNone: the event belongs to neither connection (a timeout or a
	// cancellation).
	SideNone Side = iota
	// SideA is the connection passed as a.
	SideA
	// SideB is the connection passed as b.
	SideB
)

// String returns "", "a" or "b".
func (s Side) String() string {
	switch s {
	case SideA:
		return "a"
	case SideB:
		return "b"
	}
	return ""
}

// End says how a direction, or the whole join, ended.
type End uint8

const (
	// EndEOF: the peer closed its write half cleanly (a FIN; io.EOF).
	EndEOF End = iota
	// EndReset: the peer reset the connection (ECONNRESET, or EPIPE on a
	// write).
	EndReset
	// EndIdleTimeout: no byte moved in either direction for
	// Joiner.IdleTimeout.
	EndIdleTimeout
	// EndLifetime: the join lasted Joiner.Lifetime.
	EndLifetime
	// EndCanceled: the context passed to Join was canceled.
	EndCanceled
	// EndError: any other read or write error.
	EndError
)

// String returns "eof", "reset", "idle_timeout", "lifetime", "canceled" or
// "error".
func (e End) String() string {
	switch e {
	case EndEOF:
		return "eof"
	case EndReset:
		return "reset"
	case EndIdleTimeout:
		return "idle_timeout"
	case EndLifetime:
		return "lifetime"
	case EndCanceled:
		return "canceled"
	case EndError:
		return "error"
	}
	return "unknown"
}

// Sentinel errors returned by Join (and found in Stats.Err) when a timeout
// ends the join.
var (
	ErrIdleTimeout = errors.New("splice: idle timeout")
	ErrLifetime    = errors.New("splice: lifetime exceeded")
)

// Error is a read or write error on one of the two connections. Join returns
// it (wrapped in nothing) when a connection failed; errors.Is(err,
// syscall.ECONNRESET) and Errno see through it.
type Error struct {
	Side Side   // the connection that failed
	Op   string // "read", "write" or "splice"
	Err  error  // the underlying error, usually a *net.OpError or *os.SyscallError
}

// Error implements error.
func (e *Error) Error() string {
	return "splice: " + e.Op + " on side " + e.Side.String() + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Observer sees bytes as they move. Transferred is called after every chunk
// written (a read's worth, or one splice of at most a few MiB; n > 0), from the
// goroutine of that direction: the two directions call it concurrently, so
// an implementation must be safe for concurrent use and must not block.
type Observer interface {
	Transferred(d Flow, n int64)
}

// Unwrapper is implemented by a connection that replays some buffered bytes
// before reading from the connection it wraps (package detect's replaying
// connection). Join reads through the wrapper while Buffered reports bytes,
// then uses NetConn directly, so the bytes that follow can be spliced.
// Closing, deadlines and CloseWrite still go through the wrapper.
type Unwrapper interface {
	net.Conn
	// Buffered reports how many replay bytes the next Read will return
	// before the wrapped connection is read.
	Buffered() int
	// NetConn returns the wrapped connection.
	NetConn() net.Conn
}

// Stats describes a finished join.
type Stats struct {
	// AToB and BToA count the bytes written to b and to a.
	AToB, BToA int64
	// Duration is the time from the start of Join until both connections
	// were closed.
	Duration time.Duration
	// First is the side whose event ended a direction first: the side that
	// sent the first EOF, or that failed first. SideNone when a timeout or
	// the context ended the join before either side did.
	First Side
	// End is how that first ending happened.
	End End
	// Err is the first error of the join (nil when both directions ended
	// with a clean EOF). It is the error Join returns: an *Error for a read
	// or write failure, ErrIdleTimeout, ErrLifetime, or the context's
	// error. Its End may differ from End when a clean half-close came
	// first.
	Err error
}

// Joiner joins connections. The zero value is ready to use: no idle timeout,
// no lifetime, splice on, buffers of the default sizes. A Joiner may be used
// by many goroutines at once and must not be changed while in use.
type Joiner struct {
	// IdleTimeout ends the join when no byte has moved in either direction
	// for this long. 0: none.
	IdleTimeout time.Duration
	// Lifetime ends the join this long after it started, busy or not.
	// 0: none.
	Lifetime time.Duration
	// SpliceThreshold is the size of the pooled buffer that carries small
	// messages between TCP connections; a read that fills it switches the
	// direction to splice(2) while at least this many bytes are queued.
	// 0: DefaultSpliceThreshold. It is rounded up to a power of two
	// between 1 KiB and 1 MiB.
	SpliceThreshold int
	// BufferSize is the size of the pooled buffer of a direction that
	// cannot use the TCP path (TLS, pipes) while bytes stream. 0:
	// DefaultBufferSize. It is rounded up to a power of two between 1 KiB
	// and 1 MiB. A direction that reads a *tls.Conn uses at most one TLS
	// record's 16 KiB (or WaitBufferSize, if larger): crypto/tls returns no
	// more per Read.
	BufferSize int
	// WaitBufferSize is the size of the pooled buffer such a direction
	// reads into when it may have to wait: the only way to wait on an
	// arbitrary net.Conn is a Read, which holds its buffer, so an idle
	// direction holds this much instead of BufferSize. A read that fills it
	// is written out and the direction reads into a BufferSize buffer, until
	// a read neither fills that nor ends a full TLS record (16 KiB, counting
	// the reads that filled a buffer before it): the message is over, and
	// the direction waits in a WaitBufferSize buffer again. A message larger
	// than WaitBufferSize arriving after a pause is written in two parts,
	// except from a *tls.Conn: crypto/tls keeps the rest of a record in
	// memory, where Join takes it without waiting, so a message is written
	// whole whatever the size of the buffer it began in. 0:
	// DefaultWaitBufferSize, and DefaultTLSWaitBufferSize for a direction
	// that reads a *tls.Conn; a value of BufferSize or more holds one
	// BufferSize buffer for the life of the direction. It is rounded up to
	// a power of two between 1 KiB and 1 MiB.
	WaitBufferSize int
	// DisableSplice keeps every byte in user space (the small-message path
	// only), for comparison and for kernels where splice misbehaves.
	DisableSplice bool

	hooks *hooks // tests only
}

// Defaults of Joiner's buffer sizes.
const (
	// DefaultSpliceThreshold is measured: below about 64 KiB a message
	// costs the relay as much CPU or less through a buffer (one read, one
	// write) as through splice (two splices and a queue-length ioctl); from
	// there on splice costs less (the threshold table in the splice section
	// of BENCHMARKS.md, bench/relay.sh -sections threshold).
	DefaultSpliceThreshold = 64 << 10
	// DefaultBufferSize is for a streaming direction whose source is not a
	// *tls.Conn (a pipe, another net.Conn); one that is uses one TLS
	// record's 16 KiB.
	DefaultBufferSize = 32 << 10
	// DefaultWaitBufferSize is the wait buffer of a direction that reads
	// neither a *net.TCPConn nor a *tls.Conn (a pipe, another wrapper):
	// what such a source holds cannot be taken without waiting, so a
	// message larger than the buffer is written out in two parts; 16 KiB
	// keeps most messages whole (with TLS sources, before they had a path
	// of their own, 4 KiB made 8-KiB exchanges 1.13-1.38x slower in
	// BenchmarkTLSPingPong).
	DefaultWaitBufferSize = 16 << 10
	// DefaultTLSWaitBufferSize is the wait buffer of a direction that
	// reads a *tls.Conn: a message larger than it is still written whole
	// (crypto/tls holds the rest of its record), so the buffer is sized for
	// the most messages that end in it: one idle joined TLS connection holds
	// 1 KiB per direction instead of 16.
	DefaultTLSWaitBufferSize = 1 << 10
)

// hooks lets tests see inside a join. Every field is updated atomically.
type hooks struct {
	buffersOut   atomic.Int64 // pooled buffers checked out now
	bytesOut     atomic.Int64 // their bytes
	peakBytesOut atomic.Int64 // the most bytesOut has been
	bufferGets   atomic.Int64 // buffers checked out so far
	splicing     atomic.Int64 // ReadFrom calls in flight now
	splicedBytes atomic.Int64 // bytes moved by (*net.TCPConn).ReadFrom from a *net.TCPConn
	spliceCalls  atomic.Int64
	smallBytes   atomic.Int64 // bytes moved through a buffer
	pipesOut     atomic.Int64 // Loop: splice pipes held by directions now
}

// Join joins a and b with the zero Joiner.
func Join(ctx context.Context, a, b net.Conn) (Stats, error) {
	var j Joiner
	return j.Join(ctx, a, b, nil)
}

// Join copies bytes from a to b and from b to a at once until both
// directions have ended, then closes both connections and returns. obs, if
// not nil, sees the bytes as they move.
//
// A direction ends cleanly when its source reports EOF: the destination's
// write half is closed (CloseWrite; a connection without CloseWrite is
// closed entirely, which ends the join) and the other direction goes on. A
// read or write error ends the join: the connection opposite the one that
// failed is reset (SO_LINGER 0) when it is TCP, and both are closed. The idle
// timeout, the lifetime and ctx end the join by closing both connections.
// The join owns both connections' reads: it clears the read deadline of a
// *tls.Conn it reads when it starts, and uses it (to take what crypto/tls
// holds without waiting); Joiner.Lifetime and IdleTimeout are the join's
// deadlines.
//
// The returned error is nil when both directions ended with EOF, and
// Stats.Err otherwise.
//
// One direction is copied on the caller's goroutine, so the caller's stack,
// as deep as whatever ran on it before (handshakes, dials, detection: often
// 8 KiB), is held for the join's life; a server holding many long-lived
// joins can run Join on a goroutine of its own and let the handler return
// (the sidecar example's finish: 4 KiB less per connection), or hand the
// pair to Loop.Start.
func (j *Joiner) Join(ctx context.Context, a, b net.Conn, obs Observer) (Stats, error) {
	s := &join{
		cfg:   j,
		a:     a,
		b:     b,
		obs:   obs,
		start: time.Now(),
	}
	s.small = size(j.SpliceThreshold, DefaultSpliceThreshold)
	s.big = size(j.BufferSize, DefaultBufferSize)
	s.wait = min(size(j.WaitBufferSize, DefaultWaitBufferSize), s.big)
	s.tlsWait = min(size(j.WaitBufferSize, DefaultTLSWaitBufferSize), s.big)
	s.pumps[AToB].init(s, AToB, a, b, SideA, SideB)
	s.pumps[BToA].init(s, BToA, b, a, SideB, SideA)

	if err := ctx.Err(); err != nil {
		s.setEnd(SideNone, EndCanceled, err)
	} else {
		if ctx.Done() != nil {
			s.cancelDone = make(chan struct{})
			stop := context.AfterFunc(ctx, func() {
				s.abort(SideNone, EndCanceled, ctx.Err(), SideNone)
				close(s.cancelDone)
			})
			defer func() {
				if !stop() {
					<-s.cancelDone
				}
			}()
		}
		if first := firstCheck(j.IdleTimeout, j.Lifetime); first > 0 {
			s.idle = j.IdleTimeout > 0
			s.mu.Lock()
			s.timer = time.AfterFunc(first, s.tick)
			s.mu.Unlock()
		}
		s.wg.Add(1)
		go s.pumps[BToA].run()
		s.pumps[AToB].copyDir()
		s.wg.Wait()
	}
	s.mu.Lock()
	s.finished = true // a tick from now on does nothing
	if s.timer != nil {
		s.timer.Stop()
	}
	st := Stats{AToB: s.pumps[AToB].n, BToA: s.pumps[BToA].n}
	s.ending.stats(&st)
	s.mu.Unlock()
	a.Close()
	b.Close()
	st.Duration = time.Since(s.start)
	return st, st.Err
}

// join is the state of one Join call.
type join struct {
	cfg        *Joiner
	a, b       net.Conn
	obs        Observer
	start      time.Time
	small, big int
	wait       int // the buffer a generic direction waits in (Joiner.WaitBufferSize)
	tlsWait    int // the buffer a direction reading a *tls.Conn waits in
	pumps      [2]pump
	wg         sync.WaitGroup
	cancelDone chan struct{}

	idle bool         // IdleTimeout > 0: touch records activity
	last atomic.Int64 // nanoseconds from start to the last byte moved

	aborted atomic.Bool
	eofs    atomic.Int32   // directions that ended with EOF
	shut    [2]atomic.Bool // the write half of a (index 0) or b (1) was shut by the join

	mu       sync.Mutex
	ending   ending
	timer    *time.Timer // idle timeout and lifetime
	finished bool        // Join is returning
}

func (s *join) conn(side Side) net.Conn {
	if side == SideA {
		return s.a
	}
	return s.b
}

// setEnd records an ending event: the first one sets First and End, the
// first error sets Err.
func (s *join) setEnd(side Side, end End, err error) {
	s.mu.Lock()
	s.setEndLocked(side, end, err)
	s.mu.Unlock()
}

func (s *join) setEndLocked(side Side, end End, err error) { s.ending.set(side, end, err) }

// abort records the event, resets the connection of side reset (if it is
// TCP) and closes both connections, which ends both directions. Only the
// first abort acts.
func (s *join) abort(side Side, end End, err error, reset Side) {
	s.mu.Lock()
	s.abortLocked(side, end, err, reset)
	s.mu.Unlock()
}

func (s *join) abortLocked(side Side, end End, err error, reset Side) {
	if s.aborted.Swap(true) {
		return
	}
	s.setEndLocked(side, end, err)
	if reset != SideNone {
		resetConn(s.conn(reset))
	}
	// Close the innermost connections first: an aborted join is no clean
	// close, so a wrapper (TLS) must not send close_notify, and its Close
	// could wait on a peer that does not read.
	closeInner(s.a)
	closeInner(s.b)
	s.a.Close()
	s.b.Close()
}

// closeInner closes the connection that c wraps (TLS, a replaying conn),
// if any.
func closeInner(c net.Conn) {
	if _, ok := c.(netConner); ok {
		innermost(c).Close()
	}
}

// touch records that bytes moved now.
func (s *join) touch() {
	if s.idle {
		s.last.Store(int64(time.Since(s.start)))
	}
}

// tick runs on the timer: it ends the join when the lifetime is over or no
// byte moved for the idle timeout, else it sets the timer for the next
// possible end. It holds s.mu throughout, so once Join has set finished
// no tick touches anything.
func (s *join) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished || s.aborted.Load() {
		return
	}
	now := time.Since(s.start)
	next, end, err := check(now, now-time.Duration(s.last.Load()), s.cfg.IdleTimeout, s.cfg.Lifetime)
	if err != nil {
		s.abortLocked(SideNone, end, err, SideNone)
		return
	}
	s.timer.Reset(next)
}
