//go:build linux

package detect

import (
	"encoding/binary"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// waitFD returns the socket of a *net.TCPConn for the Waiter's epoll set.
func waitFD(c net.Conn) (int, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return -1, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, false
	}
	fd := -1
	if rc.Control(func(s uintptr) { fd = int(s) }) != nil {
		return -1, false
	}
	return fd, fd >= 0
}

// waitWakeSlot is the epoll data of the poller's eventfd.
const waitWakeSlot = -1

// waitPoller is a Waiter's epoll set and the goroutine that waits on it, blocked in
// epoll_wait until a socket is readable, a deadline passes or the eventfd wakes it.
type waitPoller struct {
	epfd, evfd int
	wg         sync.WaitGroup
	mu         sync.Mutex // guards evfd against close
	closing    bool
}

// start creates the epoll set and starts the goroutine (the Waiter's mu held).
func (p *waitPoller) start(w *Waiter) error {
	var err error
	if p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	if p.evfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		unix.Close(p.epfd)
		return os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: waitWakeSlot}
	if err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, p.evfd, &ev); err != nil {
		unix.Close(p.epfd)
		unix.Close(p.evfd)
		return os.NewSyscallError("epoll_ctl", err)
	}
	p.wg.Add(1)
	go p.run(w)
	return nil
}

// add registers fd for one readiness event carrying slot and gen.
func (p *waitPoller) add(fd int, slot int32, gen uint32) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd:     slot,
		Pad:    int32(gen),
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// remove takes fd out of the set (the connection is still open: its owner has not had it back).
func (p *waitPoller) remove(fd int) {
	if fd >= 0 {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
}

// detach moves a waiting socket's registration to a duplicate of fd, carrying slot and gen
// still, and returns the duplicate: the caller may then close the connection that fd belongs to.
func (p *waitPoller) detach(fd int, slot int32, gen uint32) (int, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("fcntl", err)
	}
	// epoll keys a registration by descriptor and open file: the duplicate needs its own, and
	// the old one must go before fd is closed (it would outlive fd, through the duplicate).
	p.remove(fd)
	if err := p.add(nfd, slot, gen); err != nil {
		unix.Close(nfd)
		// Back as it was; should that fail too (not expected), the wait's timeout or the Waiter's
		// close still ends it.
		p.add(fd, slot, gen)
		return -1, err
	}
	return nfd, nil
}

// closeFD closes a detached socket.
func closeFD(fd int) { unix.Close(fd) }

// fdConn makes a net.Conn of a detached socket again, and closes fd (net.FileConn works on a
// duplicate of its own).
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	c, err := net.FileConn(f)
	f.Close()
	return c, err
}

// wake makes the goroutine look at the deadlines again.
func (p *waitPoller) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.evfd >= 0 {
		unix.Write(p.evfd, one[:])
	}
}

// close stops the goroutine and closes the descriptors.
func (p *waitPoller) close() error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.wake()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	unix.Close(p.evfd)
	p.evfd = -1
	return os.NewSyscallError("close", unix.Close(p.epfd))
}

// run is the poller's goroutine.
func (p *waitPoller) run(w *Waiter) {
	defer p.wg.Done()
	events := make([]unix.EpollEvent, 128)
	var drain [8]byte
	for {
		next := w.expire(w.now())
		timeout := -1
		if next >= 0 {
			// Round up to whole milliseconds: waking early would only loop.
			timeout = int((time.Duration(next-w.now()) + time.Millisecond - 1) / time.Millisecond)
			timeout = max(timeout, 0)
		}
		n, err := unix.EpollWait(p.epfd, events, timeout)
		if err != nil && err != unix.EINTR {
			return
		}
		for i := range max(n, 0) {
			ev := &events[i]
			if ev.Fd == waitWakeSlot {
				unix.Read(p.evfd, drain[:])
				continue
			}
			w.fire(ev.Fd, uint32(ev.Pad), nil)
		}
		p.mu.Lock()
		closing := p.closing
		p.mu.Unlock()
		if closing {
			return
		}
	}
}
