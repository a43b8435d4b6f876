//go:build linux

package splice

import (
	"context"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

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
	ending     ending
	dirs       [2]ldir
	obs        Observer
	done       func(Stats)
	start      int64 // worker clock
	last       int64 // worker clock of the last byte moved
	timer      *time.Timer
	stopCtx    func() bool
}

// setEnd records an ending event of j.
func (w *worker) setEnd(j *ljoin, side Side, end End, err error) { j.ending.set(side, end, err) }

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
	st := Stats{AToB: j.dirs[AToB].n, BToA: j.dirs[BToA].n, Duration: time.Duration(w.clock() - j.start)}
	j.ending.stats(&st)
	w.dones = append(w.dones, doneCall{j.done, st})
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
	next, end, err := check(time.Duration(now-j.start), time.Duration(now-j.last), w.l.IdleTimeout, w.l.Lifetime)
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
	if first := firstCheck(w.l.IdleTimeout, w.l.Lifetime); first > 0 {
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
