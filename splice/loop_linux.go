//go:build linux

package splice

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sniffsplice/sniff/accept"
)

const (
	// Events that let a direction read its source (a FIN, a reset and an
	// error all show in the next read) and write its destination.
	evRead  = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
	evWrite = unix.EPOLLOUT | unix.EPOLLHUP | unix.EPOLLERR
	// Every socket is registered once for both, edge-triggered: no
	// EPOLL_CTL_MOD per message.
	evAll = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

	wakeSlot = -1 // epoll data of the worker's eventfd

	turnRounds   = 8       // read-write (or splice) rounds per direction per turn
	turnBytes    = 1 << 20 // and bytes: then the direction waits in the run queue
	pipeSize     = 1 << 20 // F_SETPIPE_SZ of a splice pipe (Go's splice uses the same)
	maxFreePipes = 16      // pipes kept per worker for the next bulk direction
	maxEvents    = 256
	spliceFlags  = unix.SPLICE_F_NONBLOCK | unix.SPLICE_F_MOVE
)

// engine is the Linux event loop of a Loop: its workers.
type engine struct {
	workers []*worker
	next    atomic.Uint32
	wg      sync.WaitGroup
}

func (e *engine) init(l *Loop, n int) error {
	for range n {
		w, err := newWorker(l)
		if err != nil {
			for _, w := range e.workers {
				w.release()
			}
			e.workers = nil
			return err
		}
		e.workers = append(e.workers, w)
	}
	for _, w := range e.workers {
		e.wg.Add(1)
		go w.run(&e.wg)
	}
	return nil
}

func (e *engine) close() error {
	for _, w := range e.workers {
		w.mu.Lock()
		w.closing = true
		w.mu.Unlock()
		w.wake()
	}
	e.wg.Wait()
	for _, w := range e.workers {
		w.release()
	}
	return nil
}

// start takes a and b (or dials addr when b is nil) into a worker. It
// reports handled=false, with the connections to hand to Joiner.Join in
// place of a and b, when the pair cannot be joined in the loop.
func (e *engine) start(l *Loop, ctx context.Context, a, b net.Conn, addr netip.AddrPort, obs Observer, done func(Stats)) (handled bool, fa, fb net.Conn, err error) {
	ta := unwrapTCP(a)
	var tb *net.TCPConn
	if b != nil {
		tb = unwrapTCP(b)
	}
	if ta == nil || (b != nil && tb == nil) {
		return false, a, b, nil
	}
	fdA, err := dupFD(ta)
	if err != nil {
		return false, a, b, &Error{Side: SideA, Op: "dup", Err: err}
	}
	fdB := -1
	if tb != nil {
		if fdB, err = dupFD(tb); err != nil {
			unix.Close(fdA)
			return false, a, b, &Error{Side: SideB, Op: "dup", Err: err}
		}
	}
	// The worker closes its sockets without telling the scheduler, which
	// a close that lingers (SO_LINGER with a timeout) would stall:
	// Joiner.Join closes such a socket in its own goroutine.
	if lingers(fdA) || (fdB >= 0 && lingers(fdB)) {
		unix.Close(fdA) // the duplicates: the sockets stay open
		if fdB >= 0 {
			unix.Close(fdB)
		}
		return false, a, b, nil
	}
	// The replay bytes of a detected connection go first.
	preA, restA, errA := drainReplay(a)
	var preB []byte
	var restB bool
	var errB error
	if b != nil {
		preB, restB, errB = drainReplay(b)
	}
	if restA || restB || errA != nil || errB != nil {
		unix.Close(fdA)
		if fdB >= 0 {
			unix.Close(fdB)
		}
		if len(preA) > 0 {
			a = &replayed{Unwrapper: a.(Unwrapper), pre: preA}
		}
		if len(preB) > 0 {
			b = &replayed{Unwrapper: b.(Unwrapper), pre: preB}
		}
		return false, a, b, nil
	}
	// The duplicates keep the sockets open: closing the net.Conns only
	// takes them out of Go's poller, no FIN is sent.
	a.Close()
	if b != nil {
		b.Close()
	}
	w := e.workers[int(e.next.Add(1))%len(e.workers)]
	return true, nil, nil, w.add(ctx, fdA, fdB, addr, preA, preB, obs, done)
}

// lsrv is a listening socket that ServeDial gave to the workers: each
// registers it in its epoll set and accepts in its own turn, as HAProxy's
// threads do, so an accepted socket goes straight into the worker's set: no
// goroutine, no net.Conn, no cross-thread hand-off. EPOLLEXCLUSIVE wakes
// one worker only where the workers wait in epoll_wait on their own sets;
// sets polled through Go's poller (the default) all become ready, and a
// worker that finds the connection taken gets EAGAIN (measured under
// churn: 149 empty accepts in 4,500 listener events).
type lsrv struct {
	fd   int
	addr netip.AddrPort
	ctx  context.Context
	obs  Observer
	done func(Stats)
	errc chan error // the first accept error that stops serving
	// backoff is the current wait after running out of descriptors or memory (nanoseconds; 0:
	// accepting works), shared by the workers: accept.Backoff's rule.
	backoff atomic.Int64
	// nodelay: TCP_NODELAY is set on the listening socket, which the
	// accepted sockets inherit (one setsockopt per connection less)
	nodelay bool
}

// listenSlot is the epoll data of listener i of a worker.
func listenSlot(i int) int32 { return int32(-2 - i) }

const acceptBatch = 32 // connections accepted per event; level-triggered, the rest come next turn

// serve is ServeDial on Linux.
func (e *engine) serve(l *Loop, ctx context.Context, ln *net.TCPListener, addr netip.AddrPort, obs Observer, done func(Stats)) error {
	lfd, err := dupFD(ln)
	if err != nil {
		return l.serveAccept(ctx, ln, addr, obs, done)
	}
	if lingers(lfd) {
		// Accepted sockets inherit SO_LINGER, and the workers close
		// without telling the scheduler: accept in a goroutine, so that
		// Start hands each lingering connection to Joiner.Join.
		unix.Close(lfd)
		return l.serveAccept(ctx, ln, addr, obs, done)
	}
	ln.Close() // the duplicate keeps the socket listening
	defer unix.Close(lfd)
	ls := &lsrv{fd: lfd, addr: addr, ctx: ctx, obs: obs, done: done, errc: make(chan error, 1)}
	ls.nodelay = unix.SetsockoptInt(lfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) == nil
	var registered []*worker
	defer func() {
		for _, w := range registered {
			w.mu.Lock()
			w.removeListener(ls)
			w.mu.Unlock()
		}
	}()
	for _, w := range e.workers {
		w.mu.Lock()
		err := w.addListener(ls)
		w.mu.Unlock()
		if err != nil {
			return err
		}
		registered = append(registered, w)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-l.ctx.Done():
		return ErrLoopClosed
	case <-l.drain:
		return ErrLoopClosed
	case err := <-ls.errc:
		return err
	}
}

// addListener registers ls in the worker's epoll set (w.mu held).
func (w *worker) addListener(ls *lsrv) error {
	if w.closing {
		return ErrLoopClosed
	}
	i := len(w.listeners)
	w.listeners = append(w.listeners, ls)
	if err := w.watchListener(i); err != nil {
		w.listeners = w.listeners[:i]
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// watchListener adds the socket of listener i to the worker's epoll set
// (w.mu held).
func (w *worker) watchListener(i int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: listenSlot(i)}
	return unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.listeners[i].fd, &ev)
}

// removeListener takes ls out of the worker's epoll set (w.mu held); its
// slot stays, empty.
func (w *worker) removeListener(ls *lsrv) {
	for i, x := range w.listeners {
		if x == ls {
			w.listeners[i] = nil
			if !w.closing {
				unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, ls.fd, nil)
			}
		}
	}
}

// accept takes up to acceptBatch connections from listener i and joins
// each with a new connection to its address.
func (w *worker) accept(i int) {
	if i >= len(w.listeners) || w.listeners[i] == nil {
		return
	}
	ls := w.listeners[i]
	for range acceptBatch {
		r, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(ls.fd), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch errno {
		case 0:
			if ls.backoff.Load() != 0 {
				ls.backoff.Store(0)
			}
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			return
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			// Out of descriptors or memory: stop listening for a moment
			// (level-triggered, the event would come back at once), 5 ms
			// doubling to 1 s as accept.Loop waits.
			wait := min(max(2*time.Duration(ls.backoff.Load()), accept.MinDelay), accept.MaxDelay)
			ls.backoff.Store(int64(wait))
			unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, ls.fd, nil)
			time.AfterFunc(wait, func() {
				w.mu.Lock()
				if !w.closing && i < len(w.listeners) && w.listeners[i] == ls {
					w.watchListener(i)
				}
				w.mu.Unlock()
			})
			return
		default:
			w.listeners[i] = nil
			unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, ls.fd, nil)
			select {
			case ls.errc <- &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}:
			default:
			}
			return
		}
		fd := int(r)
		if !ls.nodelay {
			// As Go's accept does: small messages go out at once.
			rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		j, dialOp, dialErr := newJoin(w, fd, -1, ls.addr, nil, nil, ls.obs, ls.done)
		w.addLocked(ls.ctx, j, dialOp, dialErr) // closes the sockets when it fails
	}
}

// lingers reports whether closing fd would wait for unsent bytes
// (SO_LINGER on, with a timeout).
func lingers(fd int) bool {
	l, err := unix.GetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER)
	return err == nil && l.Onoff != 0 && l.Linger > 0
}

// dupFD duplicates the socket under c (close-on-exec; the duplicate shares
// the open file description, so it is non-blocking like the original).
func dupFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	cerr := rc.Control(func(fd uintptr) {
		nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, os.NewSyscallError("fcntl", err)
	}
	return nfd, nil
}

// worker is one event loop: an epoll set, the joins registered in it and
// the buffer every small message of them goes through.
type worker struct {
	l       *Loop
	epfd    int
	file    *os.File        // epfd in Go's poller (not blockingWait)
	rc      syscall.RawConn // of file
	evfd    int             // eventfd: wakes the worker for kills and Close
	events  []unix.EpollEvent
	scratch []byte // the small-message buffer, SpliceThreshold bytes
	epoch   time.Time
	now     int64   // nanoseconds since epoch at the start of the turn
	wakeBuf [8]byte // the eventfd increment, 1

	mu      sync.Mutex
	joins   []*ljoin // indexed by slot, the epoll data of the sockets
	free    []int32  // free slots
	gen     uint32
	killq   []kill // joins ended from outside (context, timer, failed dial)
	closing bool
	runq    []runItem // directions stopped by the turn budget
	spare   []runItem
	pipes   []lpipe // free pipes, empty
	dones   []doneCall
	// listening sockets of ServeDial, indexed by -2-slot
	listeners []*lsrv
}

type kill struct {
	j     *ljoin
	side  Side
	end   End
	err   error
	reset int // socket index to reset, -1: none
}

type runItem struct {
	j *ljoin
	d Direction
}

type doneCall struct {
	fn func(Stats)
	st Stats
}

type lpipe struct{ r, w int32 }

// ljoin is one join in a worker: the only memory an idle join holds.
type ljoin struct {
	w          *worker
	slot       int32
	gen        uint32
	fd         [2]int32 // a, b; -1 when closed
	rd         [2]bool  // readable: an edge not yet followed by EAGAIN
	rdhup      [2]bool  // FIN, HUP or error seen: read until 0 or error
	hup        [2]bool  // EPOLLHUP or EPOLLERR seen
	connecting bool     // StartDial: b's connect is in progress
	finished   bool
	ended      bool
	first      Side
	end        End
	err        error
	dirs       [2]ldir
	obs        Observer
	done       func(Stats)
	start      int64 // worker clock
	last       int64 // worker clock of the last byte moved
	timer      *time.Timer
	stopCtx    func() bool
}

// ldir is one direction of a join; its source is socket d, its
// destination socket 1-d.
type ldir struct {
	out     []byte  // bytes read and not yet written
	pb      *[]byte // the pooled buffer under out, if any
	pipe    lpipe   // held only while bytes are in it or a bulk burst runs
	hasPipe bool
	inPipe  int
	burst   int // bytes spliced since the last EAGAIN
	n       int64
	bulk    bool // the last read filled the buffer: splice
	eof     bool // the source said EOF
	fin     bool // done: EOF passed on (the destination's write half is shut)
	blocked bool // waits for the destination's EPOLLOUT
	queued  bool // in the run queue
}

func newWorker(l *Loop) (*worker, error) {
	w := &worker{l: l, epfd: -1, evfd: -1, epoch: time.Now()}
	var err error
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if w.evfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		w.release()
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: wakeSlot}
	if err = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.evfd, &ev); err != nil {
		w.release()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	if !l.blockingWait {
		// The epoll set is itself pollable: Go's poller wakes the worker
		// when the set has events, and the worker parks in the runtime
		// like any goroutine waiting on a socket.
		if err = unix.SetNonblock(w.epfd, true); err != nil {
			w.release()
			return nil, os.NewSyscallError("fcntl", err)
		}
		w.file = os.NewFile(uintptr(w.epfd), "splice-loop")
		if w.rc, err = w.file.SyscallConn(); err != nil {
			w.release()
			return nil, err
		}
	}
	w.scratch = make([]byte, size(l.SpliceThreshold, DefaultSpliceThreshold))
	w.events = make([]unix.EpollEvent, maxEvents)
	binary.NativeEndian.PutUint64(w.wakeBuf[:], 1)
	return w, nil
}

// release closes the worker's descriptors (after its goroutine ended).
func (w *worker) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file != nil {
		w.file.Close()
		w.file = nil
	} else if w.epfd >= 0 {
		unix.Close(w.epfd)
	}
	w.epfd = -1
	if w.evfd >= 0 {
		unix.Close(w.evfd)
		w.evfd = -1
	}
	for _, p := range w.pipes {
		unix.Close(int(p.r))
		unix.Close(int(p.w))
	}
	w.pipes = nil
}

func (w *worker) clock() int64 { return int64(time.Since(w.epoch)) }

// wake makes the worker look at its kill queue and closing flag. It holds
// w.mu so that it never writes to the eventfd after release closed it.
func (w *worker) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.evfd >= 0 {
		_, err := unix.Write(w.evfd, w.wakeBuf[:])
		if err != unix.EINTR {
			return
		}
	}
}

// run is the worker's goroutine.
func (w *worker) run(wg *sync.WaitGroup) {
	defer wg.Done()
	if w.rc == nil {
		for {
			timeout := -1
			if len(w.runq) > 0 {
				timeout = 0
			}
			n, err := unix.EpollWait(w.epfd, w.events, timeout)
			if err != nil {
				if err != unix.EINTR {
					return
				}
				n = 0
			}
			if w.turn(n) {
				return
			}
		}
	}
	exit := false
	// Inside Read the callback takes the events with a zero timeout and
	// returns false when there are none: the runtime parks the goroutine
	// until the epoll set is readable again.
	cb := func(uintptr) bool {
		for range 64 {
			n, err := epollPoll(w.epfd, w.events)
			if err != nil {
				n = 0
			}
			if n == 0 && len(w.runq) == 0 {
				return false
			}
			if w.turn(n) {
				exit = true
				return true
			}
			if n < len(w.events) && len(w.runq) == 0 {
				// The set was drained: an event that came since has
				// made the set readable for Go's poller again, so park
				// without a confirming epoll_wait.
				return false
			}
		}
		return true // let other goroutines run, then go on
	}
	for !exit {
		if err := w.rc.Read(cb); err != nil {
			// Not expected (only Close closes the file, after this
			// goroutine ended): end every join rather than strand them.
			w.mu.Lock()
			w.closing = true
			w.mu.Unlock()
			w.turn(0)
			return
		}
		if !exit {
			runtime.Gosched()
		}
	}
}

// turn handles n events, the kill queue and one pass of the run queue, then
// calls the done functions of the joins that ended. It reports whether the
// worker must stop (Close).
func (w *worker) turn(n int) (exit bool) {
	w.mu.Lock()
	w.now = w.clock()
	for i := range n {
		w.event(&w.events[i])
	}
	if len(w.killq) > 0 {
		q := w.killq
		w.killq = nil
		for _, k := range q {
			if !k.j.finished {
				w.setEnd(k.j, k.side, k.end, k.err)
				w.abort(k.j, k.reset)
			}
		}
	}
	if w.closing {
		for _, j := range w.joins {
			if j != nil && !j.finished {
				w.setEnd(j, SideNone, EndCanceled, ErrLoopClosed)
				w.abort(j, -1)
			}
		}
		exit = true
	}
	if len(w.runq) > 0 {
		q := w.runq
		w.runq, w.spare = w.spare[:0], q
		for _, it := range q {
			it.j.dirs[it.d].queued = false
			w.pump(it.j, it.d)
		}
		clear(q)
	}
	dones := w.dones
	w.mu.Unlock()
	if len(dones) > 0 {
		for i := range dones {
			if dones[i].fn != nil {
				dones[i].fn(dones[i].st)
			}
		}
		w.l.active.Add(-int64(len(dones)))
		clear(dones)
		w.dones = dones[:0]
	}
	return exit
}

// event handles one epoll event.
func (w *worker) event(ev *unix.EpollEvent) {
	slot := ev.Fd
	if slot == wakeSlot {
		var b [8]byte
		unix.Read(w.evfd, b[:]) // reset the counter; the queues are read under w.mu
		return
	}
	if slot <= listenSlot(0) {
		w.accept(int(-2 - slot))
		return
	}
	if slot < 0 || int(slot) >= len(w.joins) {
		return
	}
	j := w.joins[slot]
	if j == nil || j.gen != uint32(ev.Pad)>>1 {
		return
	}
	s := int(ev.Pad & 1)
	e := ev.Events
	if e&evRead != 0 {
		j.rd[s] = true
	}
	if e&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		j.rdhup[s] = true
	}
	if e&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		j.hup[s] = true
	}
	if j.connecting {
		switch {
		case s == 1 && e&evWrite != 0:
			w.connected(j, e)
		case s == 0 && e&unix.EPOLLERR != 0:
			// a was reset while b connects: no need to wait for the
			// connection's outcome.
			w.soError(j, 0)
		}
		return
	}
	if e&evWrite != 0 && j.dirs[1-s].blocked {
		w.pump(j, Direction(1-s))
	}
	if j.finished {
		return
	}
	d := &j.dirs[s]
	switch {
	case j.rd[s] && !d.fin && !d.blocked:
		w.pump(j, Direction(s))
	case e&unix.EPOLLERR != 0 && (d.fin || d.blocked):
		// Nothing reads this socket now (its peer had half-closed, or
		// its direction waits for room at the other side), so collect
		// its error here: a reset must not wait for the other direction.
		w.soError(j, s)
	}
}

// soError ends the join with socket s's pending error, if it has one.
func (w *worker) soError(j *ljoin, s int) {
	if v, err := rawGetsockoptInt(int(j.fd[s]), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && v != 0 {
		w.fail(j, s, "read", syscall.Errno(v))
	}
}

// connected handles the end of StartDial's connect, reported by events e
// on b: writable without an error or a hang-up is connected; otherwise
// SO_ERROR says why not.
func (w *worker) connected(j *ljoin, e uint32) {
	if e&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		v, err := rawGetsockoptInt(int(j.fd[1]), unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil {
			err = syscall.Errno(v)
			if v == 0 {
				err = syscall.ECONNRESET // hung up without an error to tell
			}
		}
		w.fail(j, 1, "connect", err)
		return
	}
	j.connecting = false
	w.pump(j, AToB)
	w.pump(j, BToA)
}

// pump moves bytes of direction di until its source is drained, its
// destination is full, it ends, or it used its share of the turn.
func (w *worker) pump(j *ljoin, di Direction) {
	d := &j.dirs[di]
	if d.fin || j.finished || j.connecting {
		return
	}
	src := int(di)
	moved := d.n
	for range turnRounds {
		if len(d.out) > 0 && !w.flushBuf(j, di) {
			return
		}
		if d.inPipe > 0 && !w.flushPipe(j, di) {
			return
		}
		if d.eof {
			w.dirEOF(j, di)
			return
		}
		if !j.rd[src] {
			w.putPipe(d)
			return
		}
		var more bool
		if d.bulk {
			more = w.spliceIn(j, di)
		} else {
			more = w.readOnce(j, di)
		}
		if !more {
			return
		}
		if d.n-moved >= turnBytes {
			break
		}
	}
	if !d.queued && !j.finished {
		d.queued = true
		w.runq = append(w.runq, runItem{j, di})
	}
}

// readOnce reads the source into the worker's buffer and writes what it
// read to the destination at once. It reports whether to go on.
func (w *worker) readOnce(j *ljoin, di Direction) bool {
	d := &j.dirs[di]
	src, dst := int(di), 1-int(di)
	n, err := rawRead(int(j.fd[src]), w.scratch)
	switch {
	case err == unix.EAGAIN:
		j.rd[src] = false
		return false
	case err != nil:
		w.fail(j, src, "read", err)
		return false
	case n == 0:
		return w.readEOF(j, di)
	}
	m, err := writeAll(int(j.fd[dst]), w.scratch[:n])
	if m > 0 {
		w.account(j, di, m, false)
	}
	if err != nil {
		if err == unix.EAGAIN {
			// The destination is full: keep the rest in a pooled buffer
			// and wait for its EPOLLOUT edge.
			d.pb = getPooled(w.l.hooks, len(w.scratch))
			d.out = (*d.pb)[:copy(*d.pb, w.scratch[m:n])]
		}
		w.writeFailed(j, di, "write", err)
		return false
	}
	if n == len(w.scratch) {
		d.bulk = !w.l.DisableSplice
		return true
	}
	// A short read emptied the receive queue: the next segment brings a
	// new edge, and a FIN or a reset shows as EPOLLRDHUP or EPOLLHUP, so
	// no EAGAIN read is needed, unless one of them was seen already.
	if !j.rdhup[src] {
		j.rd[src] = false
		return false
	}
	return true
}

// readEOF handles a read of 0 bytes: a clean EOF, or a reset whose error
// another system call collected (see pump.eofOrReset).
func (w *worker) readEOF(j *ljoin, di Direction) bool {
	src := int(di)
	// dirs[1-src].fin: the join shut src's write half (TIME_WAIT shows as
	// CLOSE too).
	if j.hup[src] && !j.dirs[1-src].fin && tcpStateClosed(int(j.fd[src])) {
		w.fail(j, src, "read", syscall.ECONNRESET)
		return false
	}
	j.dirs[di].eof = true
	return true
}

// writeAll writes b to fd until done or an error (EAGAIN included).
func writeAll(fd int, b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := rawWrite(fd, b[done:])
		if n > 0 {
			done += n
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// flushBuf writes the pending bytes; it reports whether they all went.
func (w *worker) flushBuf(j *ljoin, di Direction) bool {
	d := &j.dirs[di]
	dst := 1 - int(di)
	m, err := writeAll(int(j.fd[dst]), d.out)
	if m > 0 {
		d.out = d.out[m:]
		w.account(j, di, m, false)
	}
	if err != nil {
		w.writeFailed(j, di, "write", err)
		return false
	}
	d.blocked = false
	d.out = nil
	if d.pb != nil {
		putPooled(w.l.hooks, d.pb)
		d.pb = nil
	}
	return true
}

// writeFailed handles err from writing direction di's destination: on
// EAGAIN the direction waits for the destination's EPOLLOUT edge; any other
// error ends the join.
func (w *worker) writeFailed(j *ljoin, di Direction, op string, err error) {
	if err == unix.EAGAIN {
		j.dirs[di].blocked = true
		return
	}
	w.fail(j, 1-int(di), op, err)
}

// spliceIn moves what the source holds into the direction's pipe.
func (w *worker) spliceIn(j *ljoin, di Direction) bool {
	d := &j.dirs[di]
	src := int(di)
	if !d.hasPipe && !w.getPipe(d) {
		d.bulk = false // no pipe to be had: copy
		return true
	}
	n, err := rawSplice(int(j.fd[src]), int(d.pipe.w), pipeSize)
	if h := w.l.hooks; h != nil {
		h.spliceCalls.Add(1)
	}
	switch {
	case err == unix.EAGAIN:
		// Drained. A burst smaller than the buffer says the traffic is
		// small again: back to read and write.
		j.rd[src] = false
		if d.burst < len(w.scratch) {
			d.bulk = false
		}
		d.burst = 0
		w.putPipe(d)
		return false
	case err != nil:
		w.fail(j, src, "splice", err)
		return false
	case n == 0:
		w.putPipe(d)
		return w.readEOF(j, di)
	}
	d.inPipe = int(n)
	d.burst += int(n)
	return true
}

// flushPipe splices the pipe's bytes to the destination.
func (w *worker) flushPipe(j *ljoin, di Direction) bool {
	d := &j.dirs[di]
	dst := 1 - int(di)
	for d.inPipe > 0 {
		n, err := rawSplice(int(d.pipe.r), int(j.fd[dst]), d.inPipe)
		if n > 0 {
			d.inPipe -= int(n)
			w.account(j, di, int(n), true)
		}
		if err != nil {
			w.writeFailed(j, di, "splice", err)
			return false
		}
	}
	d.blocked = false
	return true
}

func (w *worker) getPipe(d *ldir) bool {
	if n := len(w.pipes); n > 0 {
		d.pipe = w.pipes[n-1]
		w.pipes = w.pipes[:n-1]
	} else {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
			return false
		}
		unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, pipeSize) // best effort
		d.pipe = lpipe{int32(p[0]), int32(p[1])}
	}
	d.hasPipe = true
	if h := w.l.hooks; h != nil {
		h.pipesOut.Add(1)
	}
	return true
}

// putPipe gives an empty pipe back to the worker (or closes it); a pipe
// with bytes in it is closed.
func (w *worker) putPipe(d *ldir) {
	if !d.hasPipe {
		return
	}
	if d.inPipe == 0 && len(w.pipes) < maxFreePipes {
		w.pipes = append(w.pipes, d.pipe)
	} else {
		rawClose(int(d.pipe.r))
		rawClose(int(d.pipe.w))
	}
	d.hasPipe, d.inPipe = false, 0
	if h := w.l.hooks; h != nil {
		h.pipesOut.Add(-1)
	}
}

// account records n bytes written by direction di.
func (w *worker) account(j *ljoin, di Direction, n int, spliced bool) {
	j.dirs[di].n += int64(n)
	j.last = w.now
	if h := w.l.hooks; h != nil {
		if spliced {
			h.splicedBytes.Add(int64(n))
		} else {
			h.smallBytes.Add(int64(n))
		}
	}
	if j.obs != nil {
		j.obs.Transferred(di, int64(n))
	}
}

// dirEOF passes a clean end of stream on: shutdown(SHUT_WR) of the
// destination, or the end of the join when the other direction is done.
func (w *worker) dirEOF(j *ljoin, di Direction) {
	d := &j.dirs[di]
	d.fin = true
	w.putPipe(d)
	w.setEnd(j, Side(di)+SideA, EndEOF, nil)
	if j.dirs[1-di].fin {
		w.finish(j) // close sends the FIN a shutdown would
		return
	}
	dst := 1 - int(di)
	if rawShutdown(int(j.fd[dst]), unix.SHUT_WR) != nil {
		w.finish(j) // no half-close to be had: closing both ends the join, cleanly
	}
}

func (w *worker) setEnd(j *ljoin, side Side, end End, err error) {
	if !j.ended {
		j.ended = true
		j.first, j.end = side, end
	}
	if err != nil && j.err == nil {
		j.err = err
	}
}

// fail ends the join because of err on socket s; the other socket is reset.
func (w *worker) fail(j *ljoin, s int, op string, err error) {
	if j.finished {
		return
	}
	side := Side(s) + SideA
	w.setEnd(j, side, endOf(err), &Error{Side: side, Op: op, Err: os.NewSyscallError(op, err)})
	w.abort(j, 1-s)
}

// abort resets socket reset (-1: none) and ends the join.
func (w *worker) abort(j *ljoin, reset int) {
	if reset >= 0 && j.fd[reset] >= 0 {
		unix.SetsockoptLinger(int(j.fd[reset]), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	w.finish(j)
}

// finish closes both sockets, gives back what the join holds and queues its
// done call.
func (w *worker) finish(j *ljoin) {
	if j.finished {
		return
	}
	j.finished = true
	for s := range j.fd {
		if j.fd[s] >= 0 {
			rawClose(int(j.fd[s]))
			j.fd[s] = -1
		}
	}
	for di := range j.dirs {
		d := &j.dirs[di]
		if d.pb != nil {
			putPooled(w.l.hooks, d.pb)
			d.pb = nil
		}
		d.out = nil
		w.putPipe(d)
	}
	w.joins[j.slot] = nil
	w.free = append(w.free, j.slot)
	if j.timer != nil {
		j.timer.Stop()
	}
	if j.stopCtx != nil {
		j.stopCtx()
	}
	// Queued with or without a done function: the loop's count of active joins comes down
	// after the call (Shutdown waits for it).
	w.dones = append(w.dones, doneCall{j.done, Stats{
		AToB:     j.dirs[AToB].n,
		BToA:     j.dirs[BToA].n,
		Duration: time.Duration(w.clock() - j.start),
		First:    j.first,
		End:      j.end,
		Err:      j.err,
	}})
	j.obs, j.done = nil, nil
}

// killLocked queues the end of j by an outside event; the caller wakes the
// worker after unlocking.
func (w *worker) killLocked(j *ljoin, side Side, end End, err error, reset int) {
	w.killq = append(w.killq, kill{j: j, side: side, end: end, err: err, reset: reset})
}

// tick runs on the join's timer: the lifetime and the idle timeout.
func (j *ljoin) tick() {
	w := j.w
	w.mu.Lock()
	if j.finished {
		w.mu.Unlock()
		return
	}
	now := w.clock()
	var next time.Duration
	var end End
	var err error
	if l := w.l.Lifetime; l > 0 {
		age := time.Duration(now - j.start)
		if age >= l {
			end, err = EndLifetime, ErrLifetime
		}
		next = l - age
	}
	if t := w.l.IdleTimeout; t > 0 && err == nil {
		idle := time.Duration(now - j.last)
		if idle >= t {
			end, err = EndIdleTimeout, ErrIdleTimeout
		} else if next == 0 || t-idle < next {
			next = t - idle
		}
	}
	if err != nil {
		w.killLocked(j, SideNone, end, err, -1)
		w.mu.Unlock()
		w.wake()
		return
	}
	j.timer.Reset(next)
	w.mu.Unlock()
}

// add registers a join of the sockets fdA and fdB (-1: connect one to
// addr). It closes both sockets when it fails.
func (w *worker) add(ctx context.Context, fdA, fdB int, addr netip.AddrPort, preA, preB []byte, obs Observer, done func(Stats)) error {
	j, dialOp, dialErr := newJoin(w, fdA, fdB, addr, preA, preB, obs, done)
	w.mu.Lock()
	err := w.addLocked(ctx, j, dialOp, dialErr)
	w.mu.Unlock()
	if err == nil && dialErr != nil {
		w.wake() // the kill queue has the join
	}
	return err
}

// newJoin makes the join of fdA and fdB, starting the connect to addr
// when fdB is -1.
func newJoin(w *worker, fdA, fdB int, addr netip.AddrPort, preA, preB []byte, obs Observer, done func(Stats)) (j *ljoin, dialOp string, dialErr error) {
	j = &ljoin{w: w, obs: obs, done: done, fd: [2]int32{int32(fdA), int32(fdB)}}
	// Replay bytes wait for the destination's first EPOLLOUT, which the
	// registration reports.
	if len(preA) > 0 {
		j.dirs[AToB].out, j.dirs[AToB].blocked = preA, true
	}
	if len(preB) > 0 {
		j.dirs[BToA].out, j.dirs[BToA].blocked = preB, true
	}
	if fdB < 0 {
		var fd int
		fd, dialOp, dialErr = connectTo(addr)
		j.fd[1] = int32(fd)
		j.connecting = dialErr == nil
	}
	return j, dialOp, dialErr
}

// addLocked registers j in the worker (w.mu held). A failed connect
// (dialErr) is queued for the worker to end the join from its goroutine,
// like every other end.
func (w *worker) addLocked(ctx context.Context, j *ljoin, dialOp string, dialErr error) error {
	closeAll := func() {
		for _, fd := range j.fd {
			if fd >= 0 {
				rawClose(int(fd))
			}
		}
	}
	if w.closing {
		closeAll()
		return ErrLoopClosed
	}
	var slot int32
	if n := len(w.free); n > 0 {
		slot = w.free[n-1]
		w.free = w.free[:n-1]
	} else {
		slot = int32(len(w.joins))
		w.joins = append(w.joins, nil)
	}
	w.gen++
	w.l.active.Add(1)
	j.slot, j.gen = slot, w.gen&0x7fffffff
	j.start = w.clock()
	j.last = j.start
	w.joins[slot] = j
	for s, fd := range j.fd {
		if fd < 0 {
			continue
		}
		ev := unix.EpollEvent{Events: evAll, Fd: slot, Pad: int32(j.gen<<1 | uint32(s))}
		if err := rawEpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
			w.l.active.Add(-1)
			w.joins[slot] = nil
			w.free = append(w.free, slot)
			closeAll()
			return &Error{Side: Side(s) + SideA, Op: "epoll_ctl", Err: os.NewSyscallError("epoll_ctl", err)}
		}
	}
	if dialErr != nil {
		w.killLocked(j, SideB, endOf(dialErr), &Error{Side: SideB, Op: dialOp, Err: dialErr}, 0)
	}
	if l := w.l; l.IdleTimeout > 0 || l.Lifetime > 0 {
		first := l.IdleTimeout
		if l.Lifetime > 0 && (first <= 0 || l.Lifetime < first) {
			first = l.Lifetime
		}
		j.timer = time.AfterFunc(first, j.tick)
	}
	if ctx.Done() != nil {
		j.stopCtx = context.AfterFunc(ctx, func() {
			w.mu.Lock()
			queued := !j.finished
			if queued {
				w.killLocked(j, SideNone, EndCanceled, ctx.Err(), -1)
			}
			w.mu.Unlock()
			if queued {
				w.wake()
			}
		})
	}
	return nil
}

// connectTo starts a non-blocking connect to addr. op names the step that
// failed.
func connectTo(addr netip.AddrPort) (fd int, op string, err error) {
	ip := addr.Addr().Unmap()
	family := unix.AF_INET
	var scope uint32
	if !ip.Is4() {
		family = unix.AF_INET6
		if z := ip.Zone(); z != "" {
			if ifi, err := net.InterfaceByName(z); err == nil {
				scope = uint32(ifi.Index)
			}
		}
	}
	fd, err = rawSocket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, "dial", os.NewSyscallError("socket", err)
	}
	// As Go's dialer does: small messages go out at once.
	rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err = rawConnect(fd, ip, addr.Port(), scope); err != nil && err != unix.EINPROGRESS {
		rawClose(fd)
		return -1, "connect", os.NewSyscallError("connect", err)
	}
	return fd, "", nil
}

// The worker's system calls on its sockets, pipes and epoll set never
// block (O_NONBLOCK, SPLICE_F_NONBLOCK, a zero timeout, a non-blocking
// connect, a close without a lingering SO_LINGER), so they are made without
// telling the scheduler (entersyscall, exitsyscall): measured, that and the
// work it makes for sysmon were a sixth of the relay's CPU on small
// messages, and on a new connection per request the kernel's connect, close
// and shutdown often outlast sysmon's 20 µs tick, so the worker's P was
// taken away and handed back through another thread about once a
// connection. They retry EINTR themselves (close does not: the descriptor
// is gone either way).

// errnoErr is e as an error, nil for 0.
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func rawClose(fd int) error {
	_, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	return errnoErr(e)
}

func rawShutdown(fd, how int) error {
	_, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
	return errnoErr(e)
}

func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errnoErr(e)
}

func rawSocket(family, typ, proto int) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), uintptr(typ), uintptr(proto))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func rawSetsockoptInt(fd, level, opt, v int) error {
	x := int32(v)
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&x)), 4, 0)
	return errnoErr(e)
}

func rawGetsockoptInt(fd, level, opt int) (int, error) {
	var x int32
	n := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&x)), uintptr(unsafe.Pointer(&n)), 0)
	return int(x), errnoErr(e)
}

// rawConnect starts connecting fd (non-blocking) to ip (unmapped), port,
// with scope as the IPv6 zone.
func rawConnect(fd int, ip netip.Addr, port uint16, scope uint32) error {
	for {
		var e unix.Errno
		if ip.Is4() {
			sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
			binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
			_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
		} else {
			sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16(), Scope_id: scope}
			binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
			_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
		}
		if e != unix.EINTR {
			return errnoErr(e)
		}
	}
}

func rawRead(fd int, b []byte) (int, error) {
	for {
		r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if e == 0 {
			return int(r), nil
		}
		if e != unix.EINTR {
			return 0, e
		}
	}
}

func rawWrite(fd int, b []byte) (int, error) {
	for {
		r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if e == 0 {
			return int(r), nil
		}
		if e != unix.EINTR {
			return 0, e
		}
	}
}

func rawSplice(in, out, n int) (int64, error) {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), spliceFlags)
		if e == 0 {
			return int64(r), nil
		}
		if e != unix.EINTR {
			return 0, e
		}
	}
}

// epollPoll takes the ready events of epfd without waiting.
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
