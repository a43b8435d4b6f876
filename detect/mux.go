package detect

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// DefaultMaxDetections is the number of connections a [Mux] holds at once between accepting them and
// handing them to a child listener when [MuxConfig].MaxDetections is 0. A connection waiting in
// detection costs one goroutine and, on Linux with MSG_PEEK, no buffer, so the default is generous:
// thousands of silent clients do not stop the mux from serving the others.
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
	// MaxDetections bounds the connections the mux holds at once: from accept, through detection, to
	// the moment a child listener's Accept takes the connection. 0 means [DefaultMaxDetections]; a
	// negative value means no bound.
	//
	// A child listener that is never Accepted from keeps the connections routed to it waiting (each
	// holding its slot), as a listen backlog would: Close a child you will not serve, and its
	// connections are closed and counted instead.
	MaxDetections int

	// RefuseWhenFull chooses what happens to a connection accepted while MaxDetections connections
	// are in flight. false (the default): the accept loop waits for a slot, so further connections
	// wait in the kernel's listen backlog (counted in [MuxStats].Waited). true: the connection is
	// closed at once, undetected (outcome [MuxRefused]).
	RefuseWhenFull bool

	// OnConn, if non-nil, is called once for every accepted connection when the mux is done with it:
	// handed to a child, or closed (and why). It runs on the connection's own goroutine (or the
	// accept loop for [MuxRefused]); it must be safe for concurrent use, should return quickly, and
	// must not call [Mux.Close].
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
	// MuxRefused: MaxDetections connections were in flight and RefuseWhenFull is set; the connection
	// was closed without detection.
	MuxRefused
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
	case MuxRefused:
		return "refused"
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
	// Result is the detection result: zero for MuxRefused; for MuxShutdown and MuxDetectFailed,
	// what detection returned along with its error.
	Result Result
	// Err is the detection error for MuxDetectFailed, else nil.
	Err error
	// RemoteAddr is the peer's address.
	RemoteAddr net.Addr
}

// MuxStats are the counters of a [Mux] since it was created.
type MuxStats struct {
	Accepted     uint64 // connections accepted from the parent listener
	Routed       uint64 // handed to a child listener
	Unrouted     uint64 // closed: no listener for their protocol and no Default
	ChildClosed  uint64 // closed: their child listener was closed
	Refused      uint64 // closed undetected: full and RefuseWhenFull
	DetectFailed uint64 // closed: detection error
	Shutdown     uint64 // closed: the mux closed first
	Waited       uint64 // times the accept loop had to wait for a free slot
	InFlight     int64  // connections held by the mux now (detecting or awaiting a child's Accept)
}

// Mux serves several protocols on one listener. Create it with [NewMux], take one child listener
// per protocol set with [Mux.Match] and [Mux.Default], hand those to servers (net/http, grpc-go, a
// raw TCP loop), and run [Mux.Serve].
//
// Unlike a sequential matcher chain, every accepted connection is detected on its own goroutine, so
// a client that connects and sends nothing never delays the accept or detection of any other; the
// number of connections in flight is bounded by [MuxConfig].MaxDetections. Routing rules:
//   - a protocol goes to the first child created by Match that names it;
//   - [GRPC] goes to the child for [HTTP2] when no child names GRPC (gRPC is HTTP/2);
//   - everything else (unknown, timed out, a protocol no Match names) goes to the Default child;
//   - with no such child, the connection is closed and counted (outcome [MuxUnrouted]).
//
// Closing the mux closes the parent listener, ends in-flight detections (closing their
// connections), and makes every child's Accept fail with an error wrapping [net.ErrClosed]. Closing
// one child affects only that child: its later connections are closed and counted
// ([MuxChildClosed]); siblings keep serving.
//
// Every child's Addr is the parent listener's. A Mux must be created with NewMux.
type Mux struct {
	root   net.Listener
	det    *Detector
	cfg    MuxConfig
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.RWMutex
	routes  map[Protocol]*muxListener
	def     *muxListener
	serving bool
	served  chan struct{} // closed when Serve returns

	closeOnce sync.Once
	closeErr  error

	accepted, routed, unrouted, childClosed, refused, detectFailed, shutdown, waited atomic.Uint64
	inFlight                                                                         atomic.Int64
}

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
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// Match returns a listener that receives the connections detected as any of protos. A protocol
// already claimed by an earlier Match stays with that earlier listener. Match may be called before
// or while Serve runs.
func (m *Mux) Match(protos ...Protocol) net.Listener {
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
		Accepted:     m.accepted.Load(),
		Routed:       m.routed.Load(),
		Unrouted:     m.unrouted.Load(),
		ChildClosed:  m.childClosed.Load(),
		Refused:      m.refused.Load(),
		DetectFailed: m.detectFailed.Load(),
		Shutdown:     m.shutdown.Load(),
		Waited:       m.waited.Load(),
		InFlight:     m.inFlight.Load(),
	}
}

// Addr returns the parent listener's address.
func (m *Mux) Addr() net.Addr { return m.root.Addr() }

// Serve accepts connections from the parent listener until it fails or the mux is closed, detecting
// each on its own goroutine and handing it to its child listener. It returns [ErrMuxClosed] after
// [Mux.Close], otherwise the parent's Accept error (temporary errors such as EMFILE are retried with
// a back-off). When Serve returns, the mux is closed and every goroutine it started has ended.
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

	limit := m.cfg.MaxDetections
	if limit == 0 {
		limit = DefaultMaxDetections
	}
	var g errgroup.Group
	if limit > 0 {
		g.SetLimit(limit)
	}
	err := m.acceptLoop(&g)
	m.close()
	_ = g.Wait() // handlers always return nil
	return err
}

func (m *Mux) acceptLoop(g *errgroup.Group) error {
	var backoff time.Duration
	for {
		c, err := m.root.Accept()
		if err != nil {
			if m.ctx.Err() != nil {
				return ErrMuxClosed
			}
			if !temporaryAcceptError(err) {
				return err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-m.ctx.Done():
				t.Stop()
				return ErrMuxClosed
			}
			continue
		}
		backoff = 0
		m.accepted.Add(1)
		m.inFlight.Add(1)
		h := func() error { m.handle(c); return nil }
		if g.TryGo(h) {
			continue
		}
		if m.cfg.RefuseWhenFull {
			m.finish(MuxEvent{Outcome: MuxRefused, RemoteAddr: c.RemoteAddr()})
			_ = c.Close()
			continue
		}
		m.waited.Add(1)
		// Blocks until a slot frees. Close frees every slot quickly: it cancels every detection.
		g.Go(h)
	}
}

// temporaryAcceptError reports whether Accept failed for a reason that may pass (as net/http treats
// them): out of file descriptors or memory, an aborted handshake, a timeout.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// handle detects c and hands it to its child listener, or closes it. A connection the mux closes is
// counted (and reported) before it is closed, so a peer that sees the close also sees the count.
func (m *Mux) handle(c net.Conn) {
	remote := c.RemoteAddr()
	// A Close of the mux during detection closes the connection, which ends any read in progress.
	stop := context.AfterFunc(m.ctx, func() { _ = c.Close() })
	res, dc, err := m.det.Detect(m.ctx, c)
	if dc == nil {
		dc = c
	}
	drop := func(ev MuxEvent) {
		m.finish(ev)
		_ = dc.Close()
	}
	if !stop() {
		drop(MuxEvent{Outcome: MuxShutdown, Result: res, RemoteAddr: remote})
		return
	}
	if err != nil {
		if m.ctx.Err() != nil {
			drop(MuxEvent{Outcome: MuxShutdown, Result: res, RemoteAddr: remote})
		} else {
			drop(MuxEvent{Outcome: MuxDetectFailed, Result: res, Err: err, RemoteAddr: remote})
		}
		return
	}
	l := m.route(res.Protocol)
	if l == nil {
		drop(MuxEvent{Outcome: MuxUnrouted, Result: res, RemoteAddr: remote})
		return
	}
	out := l.deliver(dc)
	if out != MuxRouted {
		drop(MuxEvent{Outcome: out, Result: res, RemoteAddr: remote})
		return
	}
	m.finish(MuxEvent{Outcome: MuxRouted, Result: res, RemoteAddr: remote})
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
	case MuxRefused:
		m.refused.Add(1)
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
	})
	return first
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
