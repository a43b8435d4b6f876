//go:build linux

package splice

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
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

// connections accepted per event; level-triggered, the rest come next turn

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
