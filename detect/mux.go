package detect

import (
	"container/list"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sniffsplice/sniff/accept"
)

// DefaultMaxDetections is the number of connections a [Mux] detects at once (they have sent
// bytes and each holds a goroutine until it is decided) when [MuxConfig].MaxDetections is 0.
// Connections that have sent nothing do not count: they wait in the Mux's [Waiter], without a
// goroutine, up to [MuxConfig].MaxWaiting of them.
const DefaultMaxDetections = 4096

// ErrMuxClosed is returned by [Mux.Serve] after [Mux.Close], and (inside a *net.OpError) by the Accept
// method of every child listener once the mux is closed. It wraps [net.ErrClosed], so
// errors.Is(err, net.ErrClosed) holds, which is what net/http and grpc-go servers look for.
var ErrMuxClosed = &muxClosedError{}

type muxClosedError struct{}

func (*muxClosedError) Error() string { return "detect: mux closed: " + net.ErrClosed.Error() }
func (*muxClosedError) Unwrap() error { return net.ErrClosed }

// ErrMuxServing is returned by [Mux.Serve] when it is called while another Serve runs or has run.
var ErrMuxServing = errors.New("detect: Mux.Serve called more than once")

// MuxConfig configures a [Mux]. The zero value is ready to use.
type MuxConfig struct {
	// MaxWaiting bounds the connections that have sent nothing yet; they wait in an epoll set
	// (Linux) with no goroutine or buffer each. When a connection arrives with MaxWaiting waiting,
	// the one that has waited longest is shed: decided as a detection timeout (Protocol Unknown,
	// Reason ReasonTimeout, [MuxEvent].Shed set) and routed like one, to the Default listener.
	// Above half of MaxWaiting, new connections get shorter detection timeouts (see [Waiter]).
	// 0 means [DefaultMaxWaiting].
	MaxWaiting int

	// MaxDetections bounds the connections being detected at once: they have sent their first
	// bytes and each holds a goroutine until the matchers decide (a client that sends one byte and
	// then trickles, or stops, holds one until its timeout). When a connection becomes ready to
	// detect with MaxDetections being detected, the detection that started first is shed: decided
	// as a timeout, with what it had seen so far replayed, and routed to the Default listener. 0
	// means [DefaultMaxDetections]; a negative value means no bound.
	MaxDetections int

	// Preamble, if non-nil, runs on each connection once it has bytes to read and before it is
	// detected, for what precedes the client's own bytes — a load balancer's PROXY protocol header.
	// It returns the connection to detect on (and to hand to the child listener); an error closes
	// the connection (outcome MuxDetectFailed). With package proxyproto:
	//
	//	Preamble: func(ctx context.Context, c net.Conn) (net.Conn, error) {
	//		c, h, err := reader.ReadHeader(ctx, c) // the very *net.TCPConn comes back
	//		if err != nil || h == nil {
	//			return c, err
	//		}
	//		return proxyproto.NewConn(c, h), nil // RemoteAddr: the client's, from the header
	//	}
	//
	// ctx ends when the mux is closed.
	Preamble func(ctx context.Context, c net.Conn) (net.Conn, error)

	// OnConn, if non-nil, is called once for every accepted connection when the mux is done with it:
	// handed to a child, or closed (and why). It runs on the connection's own goroutine; it must be
	// safe for concurrent use, should return quickly, and must not call [Mux.Close] or
	// [Mux.Shutdown].
	OnConn func(MuxEvent)
}

// MuxOutcome says what a [Mux] did with one accepted connection.
type MuxOutcome uint8

const (
	// MuxRouted: the connection was handed to a child listener's Accept.
	MuxRouted MuxOutcome = iota
	// MuxUnrouted: no child listener takes the detected protocol and there is no Default listener;
	// the connection was closed.
	MuxUnrouted
	// MuxChildClosed: the child listener for the detected protocol had been closed; the connection
	// was closed. Its siblings keep serving.
	MuxChildClosed
	// MuxDetectFailed: detection returned an error (a read error such as a reset); the connection was
	// closed.
	MuxDetectFailed
	// MuxShutdown: the mux was closed before the connection was handed off; the connection was closed.
	MuxShutdown
)

// String returns a short lower-case name, suitable as a metric label.
func (o MuxOutcome) String() string {
	switch o {
	case MuxRouted:
		return "routed"
	case MuxUnrouted:
		return "unrouted"
	case MuxChildClosed:
		return "child_closed"
	case MuxDetectFailed:
		return "detect_failed"
	case MuxShutdown:
		return "shutdown"
	}
	return "unknown"
}

// MuxEvent reports the fate of one accepted connection to [MuxConfig].OnConn.
type MuxEvent struct {
	Outcome MuxOutcome
	// Result is the detection result; for MuxShutdown and MuxDetectFailed, what detection returned
	// along with its error.
	Result Result
	// Err is the detection error for MuxDetectFailed, else nil.
	Err error
	// Shed is set when the connection was decided early to make room (see [MuxConfig]): Result
	// then says Unknown and ReasonTimeout.
	Shed bool
	// RemoteAddr is the peer's address.
	RemoteAddr net.Addr
}

// MuxStats are the counters of a [Mux] since it was created.
type MuxStats struct {
	Accepted      uint64 // connections accepted from the parent listener
	Routed        uint64 // handed to a child listener
	Unrouted      uint64 // closed: no listener for their protocol and no Default
	ChildClosed   uint64 // closed: their child listener was closed
	DetectFailed  uint64 // closed: detection error
	Shutdown      uint64 // closed: the mux closed first
	ShedWaiting   uint64 // decided early while silent: MaxWaiting were waiting (also counted as routed, or not)
	ShedDetecting uint64 // decided early while detecting: MaxDetections were detecting
	AcceptErrors  uint64 // Accept failures that passed (EMFILE and the like), each waited out
	Detached      uint64 // silent past a second: waited as their descriptor alone (Waiter.Park)
	InFlight      int64  // connections held by the mux now (waiting, detecting or awaiting a child's Accept)
	Waiting       int64  // of which silent, in the Waiter
	Detecting     int64  // of which being detected
}

// Mux serves several protocols on one listener. Create it with [NewMux], take one child listener
// per protocol set with [Mux.Match] and [Mux.Default], hand those to servers (net/http, grpc-go, a
// raw TCP loop), and run [Mux.Serve].
//
// A connection goes through one lifecycle: accepted (by [accept.Loop]'s rule: running out of
// descriptors or memory is waited out, never fatal), then it waits for its first bytes in a
// [Waiter] (no goroutine, no buffer: a client that connects and says nothing delays no one and
// costs its socket; after a second, [Waiter.Park], its descriptor alone), then it is detected on
// a goroutine of its own, then handed to the child listener of its protocol. The limits are
// [MuxConfig]'s; a full mux sheds its oldest waiting or detecting connection to the Default
// listener rather than stop accepting. Routing rules:
//   - a protocol goes to the first child created by Match that names it;
//   - [GRPC] goes to the child for [HTTP2] when no child names GRPC (gRPC is HTTP/2);
//   - everything else (unknown, timed out, shed, a protocol no Match names) goes to the Default
//     child;
//   - with no such child, the connection is closed and counted (outcome [MuxUnrouted]).
//
// Closing the mux closes the parent listener, ends in-flight detections (closing their
// connections), and makes every child's Accept fail with an error wrapping [net.ErrClosed]. Closing
// one child affects only that child: its later connections are closed and counted
// ([MuxChildClosed]); siblings keep serving. [Mux.Shutdown] stops accepting and lets the
// connections already speaking finish their detection and reach their child first.
//
// Every child's Addr is the parent listener's. A Mux must be created with NewMux.
type Mux struct {
	root   net.Listener
	det    *Detector
	cfg    MuxConfig
	ctx    context.Context
	cancel context.CancelFunc
	wait   Waiter

	mu      sync.RWMutex
	routes  map[Protocol]*muxListener
	def     *muxListener
	serving bool
	served  chan struct{} // closed when Serve returns

	closeOnce sync.Once
	closeErr  error

	// stopAccept ends the accept loop without closing the mux (Shutdown).
	acceptCtx  context.Context
	stopAccept context.CancelFunc
	draining   atomic.Bool
	conns      sync.WaitGroup // every connection the mux holds

	dmu       sync.Mutex
	detecting list.List // *muxDetection, oldest first

	accepted, routed, unrouted, childClosed, detectFailed, shutdown atomic.Uint64
	shedWaiting, shedDetecting, acceptErrors                        atomic.Uint64
	inFlight, detectingN                                            atomic.Int64
}

// muxDetection is a connection being detected; shedding it cancels its context.
type muxDetection struct {
	cancel context.CancelCauseFunc
}

// errShed is the cause of a detection's cancellation when it is shed.
var errShed = errors.New("detect: detection shed")

// NewMux returns a Mux that accepts from l and classifies with d (nil: a zero [Detector]). At most
// one MuxConfig may be given; without one the zero MuxConfig applies. The Mux takes ownership of l:
// [Mux.Close] closes it.
func NewMux(l net.Listener, d *Detector, cfg ...MuxConfig) *Mux {
	if d == nil {
		d = &Detector{}
	}
	m := &Mux{root: l, det: d, routes: make(map[Protocol]*muxListener)}
	if len(cfg) > 0 {
		m.cfg = cfg[len(cfg)-1]
	}
	m.wait.Max = m.cfg.MaxWaiting
	m.wait.ParkKeeps = true // a silent connection whose wait ends is decided as a timeout, not closed
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.acceptCtx, m.stopAccept = context.WithCancel(m.ctx)
	return m
}

// Match returns a listener that receives the connections detected as any of protos. A protocol
// already claimed by an earlier Match stays with that earlier listener. Match may be called before
// or while Serve runs. Naming GRPC while the Detector's GRPC mode is off returns a listener whose
// Accept fails, since no connection would ever be detected as gRPC.
func (m *Mux) Match(protos ...Protocol) net.Listener {
	if l := grpcOffListener(m.det, m.root.Addr(), protos); l != nil {
		return l
	}
	l := m.newChild()
	m.mu.Lock()
	for _, p := range protos {
		if _, taken := m.routes[p]; !taken {
			m.routes[p] = l
		}
	}
	m.mu.Unlock()
	return l
}

// Default returns the listener that receives every connection no Match listener takes: unknown
// protocols, detection timeouts, and protocols no Match names. Every call returns the same listener.
func (m *Mux) Default() net.Listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.def == nil {
		m.def = m.newChild()
	}
	return m.def
}

func (m *Mux) newChild() *muxListener {
	return &muxListener{m: m, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Stats returns the mux's counters.
func (m *Mux) Stats() MuxStats {
	return MuxStats{
		Accepted:      m.accepted.Load(),
		Routed:        m.routed.Load(),
		Unrouted:      m.unrouted.Load(),
		ChildClosed:   m.childClosed.Load(),
		DetectFailed:  m.detectFailed.Load(),
		Shutdown:      m.shutdown.Load(),
		ShedWaiting:   m.shedWaiting.Load(),
		ShedDetecting: m.shedDetecting.Load(),
		AcceptErrors:  m.acceptErrors.Load(),
		Detached:      m.wait.Stats().Detached,
		InFlight:      m.inFlight.Load(),
		Waiting:       int64(m.wait.Len()),
		Detecting:     m.detectingN.Load(),
	}
}

// WaitStats returns the counts of the Waiter in which the mux's connections wait for their first
// bytes: how many wait now, how each wait ended (ready, timed out, shed, closed), how many had
// their timeout shortened under pressure and how many waited detached. Hand it to
// metrics.Registry.AddWaiter to export them.
func (m *Mux) WaitStats() WaitStats { return m.wait.Stats() }

// Addr returns the parent listener's address.
func (m *Mux) Addr() net.Addr { return m.root.Addr() }

// Serve accepts connections from the parent listener until it fails or the mux is closed or shut
// down, and carries each through the lifecycle described on [Mux]. It returns [ErrMuxClosed] after
// [Mux.Close] or [Mux.Shutdown], otherwise the parent's Accept error (failures that pass, such as
// EMFILE, are waited out with [accept.Loop]'s back-off and counted in [MuxStats].AcceptErrors).
// When Serve returns, the mux is closed and every goroutine it started has ended.
func (m *Mux) Serve() error {
	m.mu.Lock()
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return ErrMuxClosed
	}
	if m.serving {
		m.mu.Unlock()
		return ErrMuxServing
	}
	m.serving = true
	m.served = make(chan struct{})
	m.mu.Unlock()
	defer close(m.served)

	loop := accept.Loop{OnTemporary: func(error, time.Duration) { m.acceptErrors.Add(1) }}
	err := loop.Serve(m.acceptCtx, m.root, m.admit)
	if m.acceptCtx.Err() != nil {
		err = ErrMuxClosed
	}
	if !m.draining.Load() {
		m.close()
	}
	m.conns.Wait()
	m.close()
	return err
}

// admit takes one accepted connection into the lifecycle: it waits, without a goroutine, for its
// first bytes.
func (m *Mux) admit(c net.Conn) {
	m.accepted.Add(1)
	m.inFlight.Add(1)
	m.conns.Add(1)
	start := time.Now()
	m.wait.Park(c, m.det.timeout(), func(c net.Conn, err error) { m.ready(c, start, err) })
}

// ready runs on the connection's own goroutine when it has spoken (err nil), or its wait ended.
// A connection silent for the Waiter's DetachAfter waits as its descriptor alone (Park) and is
// made again when its wait ends; c is nil when that failed (no descriptor to spare), the socket
// closed.
func (m *Mux) ready(c net.Conn, start time.Time, err error) {
	defer m.conns.Done()
	closed := Result{Protocol: Unknown, Reason: ReasonClosed}
	switch {
	case c == nil && (errors.Is(err, ErrWaiterClosed) || m.ctx.Err() != nil):
		m.finish(MuxEvent{Outcome: MuxShutdown, Result: closed})
		return
	case c == nil:
		m.finish(MuxEvent{Outcome: MuxDetectFailed, Result: closed, Err: err})
		return
	}
	remote := c.RemoteAddr()
	switch {
	case errors.Is(err, ErrWaiterClosed) || m.ctx.Err() != nil:
		m.drop(c, MuxEvent{Outcome: MuxShutdown, Result: closed, RemoteAddr: remote})
		return
	case err != nil:
		// Silent until its timeout, or shed: decided as a timeout.
		shed := errors.Is(err, ErrShed)
		if shed {
			m.shedWaiting.Add(1)
		}
		res := Result{Protocol: Unknown, Reason: ReasonTimeout, Duration: time.Since(start)}
		if m.det.OnResult != nil {
			m.det.OnResult(&res)
		}
		m.deliver(c, MuxEvent{Result: res, Shed: shed, RemoteAddr: remote})
		return
	}
	if m.cfg.Preamble != nil {
		pc, err := m.cfg.Preamble(m.ctx, c)
		if pc == nil {
			pc = c
		}
		if err != nil {
			ev := MuxEvent{Outcome: MuxDetectFailed, Result: closed, Err: err, RemoteAddr: remote}
			if m.ctx.Err() != nil {
				ev.Outcome, ev.Err = MuxShutdown, nil
			}
			m.drop(pc, ev)
			return
		}
		c = pc
	}
	res, dc, shed, err := m.detect(c, start)
	if dc == nil {
		dc = c
	}
	switch {
	case m.ctx.Err() != nil:
		m.drop(dc, MuxEvent{Outcome: MuxShutdown, Result: res, RemoteAddr: remote})
	case shed:
		m.shedDetecting.Add(1)
		res.Protocol, res.Reason = Unknown, ReasonTimeout
		m.deliver(dc, MuxEvent{Result: res, Shed: true, RemoteAddr: remote})
	case errors.Is(err, context.DeadlineExceeded):
		res.Protocol, res.Reason = Unknown, ReasonTimeout
		m.deliver(dc, MuxEvent{Result: res, RemoteAddr: remote})
	case err != nil:
		m.drop(dc, MuxEvent{Outcome: MuxDetectFailed, Result: res, Err: err, RemoteAddr: remote})
	default:
		m.deliver(dc, MuxEvent{Result: res, RemoteAddr: remote})
	}
}

// detect runs the Detector on c within what is left of its timeout, in a detection slot; it reports
// whether the detection was shed to make room.
func (m *Mux) detect(c net.Conn, start time.Time) (res Result, dc net.Conn, shed bool, err error) {
	ctx, cancel := context.WithCancelCause(m.ctx)
	defer cancel(nil)
	if t := m.det.timeout(); t > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithDeadline(ctx, start.Add(t))
		defer stop()
	}
	// A Close of the mux during detection closes the connection, which ends any read in progress.
	stopClose := context.AfterFunc(m.ctx, func() { _ = c.Close() })
	defer stopClose()

	d := &muxDetection{cancel: cancel}
	m.dmu.Lock()
	e := m.detecting.PushBack(d)
	var victim *muxDetection
	if max := m.maxDetections(); max > 0 && m.detecting.Len() > max {
		victim = m.detecting.Remove(m.detecting.Front()).(*muxDetection)
		if victim == d {
			e = nil
		}
	}
	m.dmu.Unlock()
	m.detectingN.Add(1)
	if victim != nil {
		victim.cancel(errShed)
	}
	res, dc, err = m.det.Detect(ctx, c)
	m.detectingN.Add(-1)
	m.dmu.Lock()
	if e != nil {
		m.detecting.Remove(e) // a no-op when it was shed (removed already)
	}
	m.dmu.Unlock()
	shed = err != nil && errors.Is(context.Cause(ctx), errShed)
	return res, dc, shed, err
}

func (m *Mux) maxDetections() int {
	if m.cfg.MaxDetections == 0 {
		return DefaultMaxDetections
	}
	return m.cfg.MaxDetections
}

// deliver routes c by ev.Result and hands it to its child, or closes it.
func (m *Mux) deliver(c net.Conn, ev MuxEvent) {
	l := m.route(ev.Result.Protocol)
	if l == nil {
		ev.Outcome = MuxUnrouted
		m.drop(c, ev)
		return
	}
	if ev.Outcome = l.deliver(c); ev.Outcome != MuxRouted {
		m.drop(c, ev)
		return
	}
	m.finish(ev)
}

// drop counts and reports ev, then closes c: a peer that sees the close also sees the count.
func (m *Mux) drop(c net.Conn, ev MuxEvent) {
	m.finish(ev)
	_ = c.Close()
}

func (m *Mux) route(p Protocol) *muxListener {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if l := m.routes[p]; l != nil {
		return l
	}
	if p == GRPC {
		if l := m.routes[HTTP2]; l != nil {
			return l
		}
	}
	return m.def
}

// finish counts the outcome of one connection, releases its place and calls the hook.
func (m *Mux) finish(ev MuxEvent) {
	switch ev.Outcome {
	case MuxRouted:
		m.routed.Add(1)
	case MuxUnrouted:
		m.unrouted.Add(1)
	case MuxChildClosed:
		m.childClosed.Add(1)
	case MuxDetectFailed:
		m.detectFailed.Add(1)
	case MuxShutdown:
		m.shutdown.Add(1)
	}
	m.inFlight.Add(-1)
	if m.cfg.OnConn != nil {
		m.cfg.OnConn(ev)
	}
}

// close cancels every detection, closes the parent listener and wakes every child's Accept. It runs
// once and reports whether this call did it; it does not wait for Serve.
func (m *Mux) close() (first bool) {
	m.closeOnce.Do(func() {
		first = true
		m.mu.Lock() // orders the cancel with Serve's start
		m.cancel()
		m.mu.Unlock()
		m.closeErr = m.root.Close()
		if errors.Is(m.closeErr, net.ErrClosed) {
			m.closeErr = nil // the accept loop closed it first
		}
		_ = m.wait.Close()
	})
	return first
}

// Shutdown closes the mux gracefully: it stops accepting (the parent listener is closed), closes
// the connections that have not sent a byte (nothing of theirs is lost), lets the connections being
// detected finish and reach their child listener (which must still Accept), then closes the mux as
// [Mux.Close] does. If ctx ends first, Shutdown closes the mux at once and returns ctx's error.
// Connections already handed to a child belong to its server: shut the servers down after the mux
// (http.Server.Shutdown, grpc.Server.GracefulStop).
func (m *Mux) Shutdown(ctx context.Context) error {
	m.draining.Store(true)
	m.stopAccept()
	_ = m.wait.Close()
	drained := make(chan struct{})
	go func() { m.conns.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	<-drained
	return err
}

// Close closes the mux: the parent listener, every connection still in detection, and every child
// listener (their Accept returns an error wrapping [net.ErrClosed]). When Serve is running, Close
// waits until it has returned, so no goroutine of the mux outlives Close; for that reason Close must
// not be called from [MuxConfig].OnConn. Connections already handed to a child belong to its server
// and stay open. Close returns the parent listener's Close error; later calls return nil.
func (m *Mux) Close() error {
	first := m.close()
	m.mu.RLock()
	served := m.served
	m.mu.RUnlock()
	if served != nil {
		<-served
	}
	if first {
		return m.closeErr
	}
	return nil
}

// muxListener is a child listener of a Mux.
type muxListener struct {
	m         *Mux
	ch        chan net.Conn // unbuffered: a connection is owned by its goroutine until Accept takes it
	done      chan struct{}
	closeOnce sync.Once
}

func (l *muxListener) opError(op string, err error) error {
	a := l.m.root.Addr()
	return &net.OpError{Op: op, Net: a.Network(), Addr: a, Err: err}
}

// Accept waits for the next connection of this listener's protocols. After Close of this listener
// it returns an error wrapping net.ErrClosed; after Close of the mux, one wrapping ErrMuxClosed.
func (l *muxListener) Accept() (net.Conn, error) {
	// Closed wins over a connection that is ready at the same moment.
	select {
	case <-l.done:
		return nil, l.opError("accept", net.ErrClosed)
	case <-l.m.ctx.Done():
		return nil, l.opError("accept", ErrMuxClosed)
	default:
	}
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, l.opError("accept", net.ErrClosed)
	case <-l.m.ctx.Done():
		return nil, l.opError("accept", ErrMuxClosed)
	}
}

// Close stops this listener only: a pending Accept returns, and later connections detected for it
// are closed and counted (MuxChildClosed). The parent listener and the siblings keep serving.
func (l *muxListener) Close() error {
	closed := false
	l.closeOnce.Do(func() {
		close(l.done)
		closed = true
	})
	if !closed {
		return l.opError("close", net.ErrClosed)
	}
	return nil
}

// Addr returns the parent listener's address.
func (l *muxListener) Addr() net.Addr { return l.m.root.Addr() }

// deliver waits until Accept takes c, or this listener or the mux closes.
func (l *muxListener) deliver(c net.Conn) MuxOutcome {
	select {
	case <-l.done:
		return MuxChildClosed
	case <-l.m.ctx.Done():
		return MuxShutdown
	default:
	}
	select {
	case l.ch <- c:
		return MuxRouted
	case <-l.done:
		return MuxChildClosed
	case <-l.m.ctx.Done():
		return MuxShutdown
	}
}
