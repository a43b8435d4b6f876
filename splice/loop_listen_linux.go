//go:build linux

package splice

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sniffsplice/sniff/accept"
)

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

const acceptBatch = 32

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
