package splice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sniffsplice/sniff/accept"
)

// ErrLoopClosed is returned by Loop.Start and Loop.StartDial after
// Loop.Close, and is the Stats.Err of the joins that Close ended. It wraps
// net.ErrClosed.
var ErrLoopClosed = fmt.Errorf("splice: loop closed: %w", net.ErrClosed)

// Loop joins connections on its own event loops, the way HAProxy does: on
// Linux, both sockets of a joined pair of TCP connections are taken out of
// Go's poller and registered, edge-triggered, in the epoll set of one of
// Loop's workers. An idle joined connection then costs its two sockets and
// a small struct: no goroutine, no buffer and no pipe. Bytes move the
// moment they arrive, with one read and one write through the worker's
// buffer for small messages, and with splice(2) through a pipe borrowed
// only while bytes sit in it for bulk (a read that fills the buffer).
//
// The semantics are Joiner's: a clean end of stream on one side becomes a
// half-close (shutdown SHUT_WR) of the other and the other direction goes
// on; a reset or any other error resets the other side; the idle timeout,
// the lifetime, the context and Close end the join by closing both
// connections. Every join ends by closing both connections and calling its
// done function once with the Stats.
//
// A pair that is not two TCP connections (TLS, pipes, wrappers other than
// Unwrapper), and every pair on systems other than Linux, is joined by
// Joiner.Join, with the same settings, in a goroutine that Loop starts and
// Close waits for.
//
// The zero value is ready to use; the workers start with the first Start.
// Loop's fields must not be changed after that. A Loop may be used by many
// goroutines at once.
type Loop struct {
	// IdleTimeout ends a join when no byte has moved in either direction
	// for this long (checked with a coarse timer per join: the join ends
	// between IdleTimeout and a little more after its last byte). 0: none.
	IdleTimeout time.Duration
	// Lifetime ends a join this long after it started, busy or not.
	// 0: none.
	Lifetime time.Duration
	// SpliceThreshold is the size of each worker's buffer for small
	// messages; a read that fills it switches the direction to splice(2)
	// until a wake-up moves less than this. 0: DefaultSpliceThreshold. It
	// is rounded up to a power of two between 1 KiB and 1 MiB.
	SpliceThreshold int
	// BufferSize is Joiner.BufferSize for the joins that Loop hands to
	// Joiner.Join (TLS, pipes). 0: DefaultBufferSize.
	BufferSize int
	// WaitBufferSize is Joiner.WaitBufferSize for those joins. 0:
	// Joiner's defaults (DefaultWaitBufferSize; DefaultTLSWaitBufferSize
	// for a direction that reads a *tls.Conn).
	WaitBufferSize int
	// DisableSplice keeps every byte in user space.
	DisableSplice bool
	// Workers is the number of event loops (each a goroutine with its own
	// epoll set); joins are spread over them in turn. 0:
	// runtime.GOMAXPROCS(0).
	Workers int

	hooks *hooks // tests only
	// blockingWait makes the workers block in epoll_wait on their own
	// threads instead of parking in Go's poller (measured against each
	// other by BenchmarkLoopWait).
	blockingWait bool

	mu        sync.Mutex
	started   bool
	closed    bool
	draining  bool
	ctx       context.Context // canceled by Close: ends the fallback joins
	cancel    context.CancelFunc
	drain     chan struct{} // closed by Shutdown: ServeDial stops accepting
	fallbacks sync.WaitGroup
	joiner    Joiner
	eng       engine
	active    atomic.Int64 // joins started and not yet done
}

// start starts the workers once; it reports ErrLoopClosed after Close.
func (l *Loop) start() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.draining {
		return ErrLoopClosed
	}
	if l.started {
		return nil
	}
	l.joiner = Joiner{
		IdleTimeout:     l.IdleTimeout,
		Lifetime:        l.Lifetime,
		SpliceThreshold: l.SpliceThreshold,
		BufferSize:      l.BufferSize,
		WaitBufferSize:  l.WaitBufferSize,
		DisableSplice:   l.DisableSplice,
		hooks:           l.hooks,
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.drain = make(chan struct{})
	n := l.Workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if err := l.eng.init(l, n); err != nil {
		l.cancel()
		return err
	}
	l.started = true
	return nil
}

// Start joins a and b and returns at once; the join goes on in the loop
// until both directions have ended, as Joiner.Join does. done (may be nil)
// is then called exactly once with the Stats, after both connections are
// closed, from a goroutine of the loop. obs (may be nil) sees the bytes as
// they move, from that goroutine too, while the loop holds its lock. Neither
// may block (every join of the worker waits); done may call Start, obs may
// not, and neither may call Close.
//
// When a and b are TCP connections (or an Unwrapper over one, such as
// package detect's replaying connection, whose replay bytes are sent
// first), Start takes their sockets out of Go's poller and closes a and b
// as net.Conns: from then on the loop owns the sockets. Otherwise, and
// when a socket is set to linger on close (SO_LINGER with a timeout, whose
// close blocks), a goroutine runs Joiner.Join. The cancellation of ctx ends the join
// (without a goroutine per join).
//
// Start returns an error, and does not call done, only when the join could
// not start: after Close (ErrLoopClosed) or when a socket could not be
// duplicated (an *Error with Op "dup"), a and b are left to the caller; when
// Close came while Start ran (ErrLoopClosed) or the epoll registration
// failed (Op "epoll_ctl"), a and b are closed.
func (l *Loop) Start(ctx context.Context, a, b net.Conn, obs Observer, done func(Stats)) error {
	return l.startJoin(ctx, a, b, netip.AddrPort{}, obs, done)
}

// StartDial is Start with b connected by the loop itself to addr: a
// non-blocking connect whose completion the loop waits for like any other
// event (no Go dialer, no goroutine). A failed connection attempt resets a
// and ends the join with an *Error of Side SideB and Op "connect" (or
// "dial" when no socket could be made) in Stats.Err; errors.Is(err,
// syscall.ECONNREFUSED) and Errno see through it. When a is not a TCP
// connection, the fallback goroutine dials with a net.Dialer.
func (l *Loop) StartDial(ctx context.Context, a net.Conn, addr netip.AddrPort, obs Observer, done func(Stats)) error {
	if !addr.IsValid() {
		return &Error{Side: SideB, Op: "dial", Err: errors.New("invalid address " + addr.String())}
	}
	return l.startJoin(ctx, a, nil, addr, obs, done)
}

func (l *Loop) startJoin(ctx context.Context, a, b net.Conn, addr netip.AddrPort, obs Observer, done func(Stats)) error {
	if err := l.start(); err != nil {
		return err
	}
	handled, a, b, err := l.eng.start(l, ctx, a, b, addr, obs, done)
	if handled || err != nil {
		return err
	}
	return l.startFallback(ctx, a, b, addr, obs, done)
}

// ServeDial takes the listener ln over and joins every connection it
// accepts, as StartDial does, with a new connection to addr, until ctx is
// done or the loop is closed or shut down; then it closes the listening
// socket and returns ctx.Err() or ErrLoopClosed (or the error that stopped
// accepting; running out of descriptors or memory does not, it is waited
// out as accept.Loop does).
// On Linux the accepted sockets never become net.Conns: ServeDial takes
// ln's socket out of Go's net package (ln is closed as a net.Listener at
// once, the socket stays open) and registers it in every worker's epoll
// set, and a worker woken by a new connection accepts it in its own turn,
// as HAProxy's threads do; this saves Go's per-connection
// set-up (poller registration, keep-alive options), its undoing, and an
// accept goroutine's hand-off. Elsewhere, and when ln's socket is set to
// linger on close (SO_LINGER with a timeout, which accepted sockets
// inherit), it calls ln.Accept and StartDial. ctx also ends the joins it
// started (pass a context without a Done channel to spare each join the
// cost of watching it). done and obs are as for Start, for every join.
func (l *Loop) ServeDial(ctx context.Context, ln *net.TCPListener, addr netip.AddrPort, obs Observer, done func(Stats)) error {
	if !addr.IsValid() {
		return &Error{Side: SideB, Op: "dial", Err: errors.New("invalid address " + addr.String())}
	}
	if err := l.start(); err != nil {
		return err
	}
	err := l.eng.serve(l, ctx, ln, addr, obs, done)
	switch {
	case l.ctx.Err() != nil || l.drained():
		return ErrLoopClosed
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return err
}

// drained reports whether Shutdown has begun (after start).
func (l *Loop) drained() bool {
	select {
	case <-l.drain:
		return true
	default:
		return false
	}
}

// serveAccept is ServeDial with ln.Accept and StartDial.
func (l *Loop) serveAccept(ctx context.Context, ln *net.TCPListener, addr netip.AddrPort, obs Observer, done func(Stats)) error {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	go func() {
		select {
		case <-l.drain:
			cancel()
		case <-actx.Done():
		}
	}()
	var startErr error
	err := accept.Serve(actx, ln, func(c net.Conn) {
		if err := l.StartDial(ctx, c, addr, obs, done); err != nil {
			c.Close()
			if errors.Is(err, ErrLoopClosed) {
				startErr = err
				cancel()
			}
		}
	})
	if startErr != nil {
		return startErr
	}
	return err
}

// startFallback runs Joiner.Join in a goroutine (dialing addr first when b
// is nil).
func (l *Loop) startFallback(ctx context.Context, a, b net.Conn, addr netip.AddrPort, obs Observer, done func(Stats)) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrLoopClosed
	}
	l.fallbacks.Add(1)
	l.active.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.fallbacks.Done()
		defer l.active.Add(-1)
		// The join ends when ctx or the loop is done.
		jctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(l.ctx, cancel)
		defer stop()
		start := time.Now()
		if b == nil {
			var d net.Dialer
			c, err := d.DialContext(jctx, "tcp", addr.String())
			if err != nil {
				resetConn(a)
				a.Close()
				if done != nil {
					done(Stats{Duration: time.Since(start), First: SideB, End: endOf(err), Err: &Error{Side: SideB, Op: "dial", Err: err}})
				}
				return
			}
			b = c
		}
		st, _ := l.joiner.Join(jctx, a, b, obs)
		if st.End == EndCanceled && l.ctx.Err() != nil && ctx.Err() == nil {
			st.Err = ErrLoopClosed
		}
		if done != nil {
			done(st)
		}
	}()
	return nil
}

// resetConn makes the next Close of the TCP connection under c send a reset.
func resetConn(c net.Conn) {
	if tcp, ok := innermost(c).(*net.TCPConn); ok {
		tcp.SetLinger(0)
	}
}

// endOf classifies err as Joiner does: EndReset for a reset or broken
// pipe, EndError otherwise.
func endOf(err error) End {
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return EndReset
	}
	return EndError
}

// Active returns the number of joins the loop is carrying: started, and their done function not
// yet returned.
func (l *Loop) Active() int { return int(l.active.Load()) }

// Shutdown ends the loop gracefully: ServeDial stops accepting (its listening socket is closed)
// and Start refuses new joins (ErrLoopClosed), the joins in progress go on until both their
// directions end (or their idle timeout or lifetime does), and then the loop is closed as Close
// does. If ctx ends first, Shutdown closes the loop at once, ending the joins still open, and
// returns ctx's error. Like Close, it must not be called from a done function or an Observer.
func (l *Loop) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	if l.closed || l.draining {
		l.mu.Unlock()
		return l.Close()
	}
	l.draining = true
	started := l.started
	if started {
		close(l.drain)
	}
	l.mu.Unlock()
	if !started {
		return l.Close()
	}
	// Poll, as net/http's Shutdown does: from 1 ms, doubling, to 100 ms between looks.
	wait := time.Millisecond
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for l.active.Load() > 0 {
		select {
		case <-ctx.Done():
			l.Close()
			return ctx.Err()
		case <-timer.C:
			wait = min(2*wait, 100*time.Millisecond)
			timer.Reset(wait)
		}
	}
	return l.Close()
}

// Close ends every join of the loop (closing its connections; Stats.Err is
// ErrLoopClosed, End EndCanceled), stops the workers and waits for them and
// for the fallback goroutines, each join's done having been called. Start
// after Close returns ErrLoopClosed. Close must not be called from a done
// function or an Observer.
func (l *Loop) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	started := l.started
	l.mu.Unlock()
	if !started {
		return nil
	}
	l.cancel()
	err := l.eng.close()
	l.fallbacks.Wait()
	return err
}

// replayed puts bytes already read from an Unwrapper back in front of it,
// for a join handed to Joiner.Join after Loop drained part of its replay.
type replayed struct {
	Unwrapper
	pre []byte
}

func (r *replayed) Read(b []byte) (int, error) {
	if len(r.pre) > 0 {
		n := copy(b, r.pre)
		r.pre = r.pre[n:]
		return n, nil
	}
	return r.Unwrapper.Read(b)
}

func (r *replayed) Buffered() int     { return len(r.pre) + r.Unwrapper.Buffered() }
func (r *replayed) NetConn() net.Conn { return r.Unwrapper }

func (r *replayed) CloseWrite() error {
	if cw, ok := r.Unwrapper.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// drainReplay reads the replay bytes of the Unwrappers from c down to the
// TCP connection without blocking. rest reports that a wrapper still
// reports buffered bytes that have not arrived (package detect's gRPC
// filter): such a connection must go on being read through its wrapper.
func drainReplay(c net.Conn) (pending []byte, rest bool, err error) {
	for {
		u, ok := c.(Unwrapper)
		if !ok {
			return pending, false, nil
		}
		if u.Buffered() > 0 {
			// A deadline in the past: Read returns what the wrapper holds
			// and fails at once instead of waiting for the network.
			u.SetReadDeadline(time.Unix(1, 0))
			for u.Buffered() > 0 {
				k := u.Buffered()
				pending = append(pending, make([]byte, k)...)
				n, rerr := u.Read(pending[len(pending)-k:])
				pending = pending[:len(pending)-k+n]
				if rerr != nil {
					if errors.Is(rerr, os.ErrDeadlineExceeded) {
						u.SetReadDeadline(time.Time{})
						return pending, true, nil
					}
					return pending, false, rerr
				}
			}
			u.SetReadDeadline(time.Time{})
		}
		c = u.NetConn()
	}
}
