//go:build linux

package splice

import (
	"encoding/binary"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

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
	d Flow
}

type doneCall struct {
	fn func(Stats)
	st Stats
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
		w.pump(j, Flow(1-s))
	}
	if j.finished {
		return
	}
	d := &j.dirs[s]
	switch {
	case j.rd[s] && !d.fin && !d.blocked:
		w.pump(j, Flow(s))
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
