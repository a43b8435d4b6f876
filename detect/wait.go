package detect

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a zero [Waiter].
const (
	// DefaultMaxWaiting is the most connections a Waiter holds at once when Max is 0: enough for
	// ten thousand silent clients with room to spare, at about 1 KiB each with their sockets.
	DefaultMaxWaiting = 16384
	// DefaultReduceAt is the share of Max above which a Waiter shortens the timeouts of the
	// connections that arrive (Envoy's overload manager does the same with reduce_timeouts).
	DefaultReduceAt = 0.5
	// DefaultMinTimeout is the shortest timeout a Waiter reduces a wait to.
	DefaultMinTimeout = time.Second
	// DefaultDetachAfter is how long a connection handed to [Waiter.Park] waits as a net.Conn
	// before the Waiter keeps only its socket, when DetachAfter is 0.
	DefaultDetachAfter = time.Second
)

// Errors a [Waiter] passes to a ready function.
var (
	// ErrWaitTimeout: the connection sent nothing within its timeout. It wraps
	// os.ErrDeadlineExceeded.
	ErrWaitTimeout = fmt.Errorf("detect: nothing received in time: %w", os.ErrDeadlineExceeded)
	// ErrShed: the Waiter was full and this connection, the one that had waited longest, made room
	// for a new one. The shedding rule is documented on [Waiter].
	ErrShed = errors.New("detect: shed to make room for a new connection")
	// ErrWaiterClosed: the Waiter was closed while the connection waited. It wraps net.ErrClosed.
	ErrWaiterClosed = fmt.Errorf("detect: waiter closed: %w", net.ErrClosed)
)

// Waiter holds connections until they have something to read — bytes, an end of stream or an
// error — without a goroutine or a buffer each. A server hands every accepted connection to
// [Waiter.Wait] and starts its goroutine (detection, a handshake) only when the client speaks,
// so a flood of clients that connect and say nothing costs their sockets and a few hundred bytes
// each, and delays no one.
//
// On Linux a *net.TCPConn waits in the Waiter's own epoll set, served by one goroutine for all
// connections. Any other connection, and every connection on other systems, is reported ready at
// once: whoever reads it next does the waiting.
//
// Limits, the rules a proxy documents for its operators:
//   - At most Max connections wait at once. A connection that arrives when the Waiter is full
//     sheds the connection that has waited longest: its ready function gets [ErrShed] (a server
//     typically treats it as a detection timeout). Accepting never stops.
//   - Above ReduceAt×Max waiting connections, the timeout of each new wait is scaled down linearly,
//     to MinTimeout when the Waiter is full; a wait's timeout is never raised, and the timeouts of
//     connections already waiting are kept.
//
// A connection handed to [Waiter.Park] rather than Wait costs less still once it has waited
// DetachAfter: the Waiter keeps its socket's descriptor alone and lets Go's structures for it
// go (about 0.9 KiB: the net.TCPConn, its netFD, addresses and poller entry), and hands back a
// new *net.TCPConn on the same socket when it is ready.
//
// The zero value is ready to use; its fields must not change after the first Wait. A Waiter is
// safe for concurrent use. [Waiter.Close] ends every wait.
type Waiter struct {
	// Max is the most connections waiting at once; 0 means DefaultMaxWaiting.
	Max int
	// ReduceAt is the share of Max above which new waits get shorter timeouts; 0 means
	// DefaultReduceAt, 1 or more turns the reduction off.
	ReduceAt float64
	// MinTimeout is the floor of a reduced timeout; 0 means DefaultMinTimeout.
	MinTimeout time.Duration
	// DetachAfter is how long a connection handed to Park waits before it is detached (the
	// Waiter keeps only its descriptor); 0 means DefaultDetachAfter, a negative value detaches
	// at once.
	DetachAfter time.Duration
	// ParkKeeps: a connection handed to Park whose wait times out or is shed after it was
	// detached comes back to ready made again, with ErrWaitTimeout or ErrShed, for the caller to
	// go on with or close, instead of nil and its socket closed by the Waiter. Set it where the end
	// of a wait does not end the connection (one waiting for its first bytes goes on undetected);
	// [ErrWaiterClosed] still closes the socket.
	ParkKeeps bool

	mu       sync.Mutex
	closed   bool
	started  bool
	ents     []waitEntry // slots; a free slot has ready == nil
	free     []int32     // free slots
	byAge    waitList    // waiting slots, oldest first
	attached waitList    // slots handed to Park and not detached yet, oldest first
	byDL     waitHeap    // waiting slots by deadline
	poll     waitPoller  // the system's part (epoll on Linux)
	epoch    time.Time
	// sleepUntil is the deadline the poller's goroutine sleeps until (-1: none), so that a wait
	// with an earlier one wakes it.
	sleepUntil int64
	// detachedConns are the connections detachDueLocked let go, closed by expire once w.mu is
	// released (only the poller's goroutine uses it).
	detachedConns []net.Conn

	waiting atomic.Int64
	counts  [waitOutcomes]atomic.Uint64
}

// waitEntry is one waiting connection.
type waitEntry struct {
	conn     net.Conn // nil once detached
	ready    func(net.Conn, error)
	deadline int64        // nanoseconds since the Waiter's epoch
	detachAt int64        // when a Park's connection is detached (epoch nanoseconds)
	fd       int          // the socket registered with the poller, -1 when none
	gen      uint32       // bumped when the slot is reused: stale events are ignored
	hidx     int32        // index in byDL
	links    [2]waitLinks // in byAge and in attached
	state    uint8        // waitPlain, waitAttached or waitDetached
}

// A waitEntry's state: handed to Wait, or to Park and not detached yet, or detached (the Waiter
// holds the descriptor fd and nothing else of the connection).
const (
	waitPlain uint8 = iota
	waitAttached
	waitDetached
)

// waitLinks are a slot's links in one waitList, -1 at the ends.
type waitLinks struct{ prev, next int32 }

// WaitStats are a [Waiter]'s counts since it was created.
type WaitStats struct {
	Waiting  int64  // connections waiting now
	Ready    uint64 // reported ready: they had something to read
	TimedOut uint64 // their timeout passed first
	Shed     uint64 // shed to make room (the Waiter was full)
	Reduced  uint64 // waits whose timeout was shortened under pressure
	Closed   uint64 // ended by Close
	Detached uint64 // connections handed to Park that waited past DetachAfter
}

const (
	outReady = iota
	outTimedOut
	outShed
	outReduced
	outClosed
	outDetached
	waitOutcomes
)

// Stats returns the Waiter's counts.
func (w *Waiter) Stats() WaitStats {
	return WaitStats{
		Waiting:  w.waiting.Load(),
		Ready:    w.counts[outReady].Load(),
		TimedOut: w.counts[outTimedOut].Load(),
		Shed:     w.counts[outShed].Load(),
		Reduced:  w.counts[outReduced].Load(),
		Closed:   w.counts[outClosed].Load(),
		Detached: w.counts[outDetached].Load(),
	}
}

// Add returns the sum of s and o, field by field (the counts of several Waiters as one).
func (s WaitStats) Add(o WaitStats) WaitStats {
	return WaitStats{
		Waiting:  s.Waiting + o.Waiting,
		Ready:    s.Ready + o.Ready,
		TimedOut: s.TimedOut + o.TimedOut,
		Shed:     s.Shed + o.Shed,
		Reduced:  s.Reduced + o.Reduced,
		Closed:   s.Closed + o.Closed,
		Detached: s.Detached + o.Detached,
	}
}

// Len returns the number of connections waiting now.
func (w *Waiter) Len() int { return int(w.waiting.Load()) }

func (w *Waiter) max() int {
	if w.Max > 0 {
		return w.Max
	}
	return DefaultMaxWaiting
}

// Timeout returns the timeout a wait of timeout gets when it starts now: timeout itself, or
// less under pressure (see [Waiter]).
func (w *Waiter) Timeout(timeout time.Duration) time.Duration {
	return w.reduce(timeout, int(w.waiting.Load()))
}

func (w *Waiter) reduce(timeout time.Duration, n int) time.Duration {
	at := w.ReduceAt
	if at == 0 {
		at = DefaultReduceAt
	}
	if at >= 1 || timeout <= 0 {
		return timeout
	}
	floor := w.MinTimeout
	if floor <= 0 {
		floor = DefaultMinTimeout
	}
	if timeout <= floor {
		return timeout
	}
	load := float64(n) / float64(w.max())
	if load <= at {
		return timeout
	}
	f := min((load-at)/(1-at), 1)
	return timeout - time.Duration(f*float64(timeout-floor))
}

// Wait hands c to the Waiter until c has something to read or timeout passes (timeout <= 0:
// no timeout). Then ready is called, exactly once and on a goroutine of its own, with c and
// nil (c has bytes, an end of stream or an error to read; nothing was read from it),
// [ErrWaitTimeout], [ErrShed] or [ErrWaiterClosed]. Wait does not block: a server calls it from
// its accept loop. Until ready is called, the Waiter owns c: do not read, write or close it.
func (w *Waiter) Wait(c net.Conn, timeout time.Duration, ready func(net.Conn, error)) {
	w.wait(c, timeout, ready, false)
}

// Park is Wait for a connection whose caller keeps no other hold on it (a *net.TCPConn that
// nothing wraps, such as an HTTP/1.1 keep-alive connection between requests): once it has waited
// DetachAfter, the Waiter keeps only its socket's descriptor and closes c, so that Go's
// structures for it go back to the heap. What ready then gets differs from Wait's:
//   - ready with nil: a new *net.TCPConn on the same socket (net.FileConn), nothing read from
//     it; or nil and an error when it cannot be made (the socket is closed then: with no
//     descriptor to spare, for one).
//   - ready with an error: nil, the socket closed by the Waiter; with [Waiter.ParkKeeps], for
//     ErrWaitTimeout and ErrShed, the new connection as for nil (or nil and an error that wraps
//     both when it cannot be made).
//
// Until it is detached, and for any other connection and on other systems than Linux, Park is
// Wait. Making the new connection costs about fifteen system calls, once per detached wait.
func (w *Waiter) Park(c net.Conn, timeout time.Duration, ready func(net.Conn, error)) {
	w.wait(c, timeout, ready, true)
}

func (w *Waiter) detachAfter() time.Duration {
	switch {
	case w.DetachAfter > 0:
		return w.DetachAfter
	case w.DetachAfter < 0:
		return 0
	}
	return DefaultDetachAfter
}

func (w *Waiter) wait(c net.Conn, timeout time.Duration, ready func(net.Conn, error), park bool) {
	fd, ok := waitFD(c)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.counts[outClosed].Add(1)
		go ready(c, ErrWaiterClosed)
		return
	}
	if !ok {
		w.mu.Unlock()
		w.counts[outReady].Add(1)
		go ready(c, nil)
		return
	}
	if !w.started {
		w.epoch = time.Now()
		w.byAge = waitList{head: -1, tail: -1}
		w.attached = waitList{head: -1, tail: -1, k: 1}
		w.sleepUntil = -1
		if err := w.poll.start(w); err != nil {
			// No poller: report ready at once, as on other systems.
			w.mu.Unlock()
			w.counts[outReady].Add(1)
			go ready(c, nil)
			return
		}
		w.started = true
	}
	var shed *waitEntry
	var shedEnt waitEntry
	if int(w.waiting.Load()) >= w.max() && w.byAge.head >= 0 {
		i := w.byAge.head
		shedEnt = w.ents[i]
		w.removeLocked(i)
		shed = &shedEnt
	}
	if r := w.reduce(timeout, int(w.waiting.Load())); r != timeout {
		timeout = r
		w.counts[outReduced].Add(1)
	}
	i := w.slotLocked()
	e := &w.ents[i]
	e.conn, e.ready, e.fd = c, ready, fd
	now := int64(time.Since(w.epoch))
	e.deadline = -1
	if timeout > 0 {
		e.deadline = now + int64(timeout)
	}
	w.byAge.pushBack(w.ents, i)
	if e.deadline >= 0 {
		w.heapPush(i)
	}
	wakeAt := e.deadline
	if park {
		e.state = waitAttached
		e.detachAt = now + int64(w.detachAfter())
		w.attached.pushBack(w.ents, i)
		if wakeAt < 0 || e.detachAt < wakeAt {
			wakeAt = e.detachAt
		}
	}
	w.waiting.Add(1)
	err := w.poll.add(fd, i, e.gen)
	if err != nil {
		w.removeLocked(i)
	} else if wakeAt >= 0 && (w.sleepUntil < 0 || wakeAt < w.sleepUntil) {
		w.sleepUntil = wakeAt
		w.poll.wake()
	}
	w.mu.Unlock()
	if shed != nil {
		w.finish(shed, outShed, ErrShed)
	}
	if err != nil {
		// The socket cannot be polled (not expected for a TCP socket): let the reader wait.
		w.counts[outReady].Add(1)
		go ready(c, nil)
	}
}

// slotLocked returns a free slot (w.mu held).
func (w *Waiter) slotLocked() int32 {
	if n := len(w.free); n > 0 {
		i := w.free[n-1]
		w.free = w.free[:n-1]
		return i
	}
	w.ents = append(w.ents, waitEntry{hidx: -1, links: [2]waitLinks{{-1, -1}, {-1, -1}}, fd: -1})
	return int32(len(w.ents) - 1)
}

// removeLocked takes slot i out of the lists and frees it (w.mu held); the caller ends the wait
// with the entry it copied first (finish).
func (w *Waiter) removeLocked(i int32) {
	e := &w.ents[i]
	w.byAge.remove(w.ents, i)
	if e.state == waitAttached {
		w.attached.remove(w.ents, i)
	}
	if e.hidx >= 0 {
		w.heapRemove(e.hidx)
	}
	e.conn, e.ready = nil, nil
	e.fd = -1
	e.state = waitPlain
	e.gen++
	w.free = append(w.free, i)
	w.waiting.Add(-1)
}

// finish ends the wait of e, a removed entry: it takes the socket out of the poller, counts the
// outcome and calls ready on a goroutine of its own (for a detached connection, with a new
// net.Conn when it is ready, with nil and its socket closed otherwise).
func (w *Waiter) finish(e *waitEntry, out int, err error) {
	w.poll.remove(e.fd)
	w.counts[out].Add(1)
	ready := e.ready
	if e.state != waitDetached {
		go ready(e.conn, err)
		return
	}
	fd := e.fd
	if err != nil && (!w.ParkKeeps || out == outClosed) {
		closeFD(fd)
		go ready(nil, err)
		return
	}
	go func() {
		c, ferr := fdConn(fd)
		if ferr != nil {
			c, err = nil, errors.Join(fmt.Errorf("detect: a parked connection cannot be taken back: %w", ferr), err)
		}
		ready(c, err)
	}()
}

// fire ends the wait of slot i with generation gen, if it still waits, with err (nil: ready).
// It is called by the poller.
func (w *Waiter) fire(i int32, gen uint32, err error) {
	w.mu.Lock()
	if int(i) >= len(w.ents) || w.ents[i].gen != gen || w.ents[i].ready == nil {
		w.mu.Unlock()
		return
	}
	e := w.ents[i]
	w.removeLocked(i)
	w.mu.Unlock()
	out := outReady
	if err != nil {
		out = outTimedOut
	}
	w.finish(&e, out, err)
}

// waitDetachBatch is the most connections the poller detaches before it looks at its events
// again.
const waitDetachBatch = 64

// expire ends every wait whose deadline is at or before now (nanoseconds since the epoch),
// detaches the Park connections due (at most waitDetachBatch), and returns when it is next
// needed, or -1 when nothing is due later. It is called by the poller.
func (w *Waiter) expire(now int64) int64 {
	for {
		w.mu.Lock()
		next := int64(-1)
		if len(w.byDL) > 0 {
			i := w.byDL[0]
			if e := w.ents[i]; e.deadline <= now {
				w.removeLocked(i)
				w.mu.Unlock()
				w.finish(&e, outTimedOut, ErrWaitTimeout)
				continue
			}
			next = w.ents[i].deadline
		}
		if at := w.detachDueLocked(now); at >= 0 && (next < 0 || at < next) {
			next = at
		}
		w.sleepUntil = next
		w.mu.Unlock()
		// Closing a connection costs system calls of its own: not under w.mu, which the
		// accept loop's next Wait needs.
		for i, c := range w.detachedConns {
			c.Close()
			w.detachedConns[i] = nil
		}
		w.detachedConns = w.detachedConns[:0]
		return next
	}
}

// detachDueLocked detaches the Park connections whose time has come, at most waitDetachBatch
// of them, and returns when the next one is due (now when the batch ended early), or -1 (w.mu
// held).
func (w *Waiter) detachDueLocked(now int64) int64 {
	for n := 0; w.attached.head >= 0; n++ {
		i := w.attached.head
		e := &w.ents[i]
		if e.detachAt > now {
			return e.detachAt
		}
		if n == waitDetachBatch {
			return now
		}
		w.attached.remove(w.ents, i)
		e.state = waitPlain
		fd, err := w.poll.detach(e.fd, i, e.gen)
		if err != nil {
			continue // it keeps waiting as for Wait
		}
		// The socket stays open through fd: closing c (expire, once w.mu is released) lets Go
		// forget it.
		w.detachedConns = append(w.detachedConns, e.conn)
		e.conn, e.fd, e.state = nil, fd, waitDetached
		w.counts[outDetached].Add(1)
	}
	return -1
}

// now is the poller's clock: nanoseconds since the Waiter's epoch.
func (w *Waiter) now() int64 { return int64(time.Since(w.epoch)) }

// Close ends every wait (their ready functions get [ErrWaiterClosed]) and stops the Waiter's
// goroutine; later Waits report ErrWaiterClosed at once. Close does not wait for the ready
// functions, which run on goroutines of their own.
func (w *Waiter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	var ended []waitEntry
	started := w.started
	for started && w.byAge.head >= 0 {
		i := w.byAge.head
		ended = append(ended, w.ents[i])
		w.removeLocked(i)
	}
	w.mu.Unlock()
	for i := range ended {
		w.finish(&ended[i], outClosed, ErrWaiterClosed)
	}
	if started {
		return w.poll.close()
	}
	return nil
}

// waitList is a doubly linked list of slots through their links[k]; -1 ends it.
type waitList struct {
	head, tail int32
	k          uint8
}

func (l *waitList) pushBack(ents []waitEntry, i int32) {
	ents[i].links[l.k] = waitLinks{prev: l.tail, next: -1}
	if l.tail >= 0 {
		ents[l.tail].links[l.k].next = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (l *waitList) remove(ents []waitEntry, i int32) {
	e := &ents[i].links[l.k]
	if e.prev >= 0 {
		ents[e.prev].links[l.k].next = e.next
	} else {
		l.head = e.next
	}
	if e.next >= 0 {
		ents[e.next].links[l.k].prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

// waitHeap is a min-heap of slots by deadline; waitEntry.hidx is each slot's index in it.
type waitHeap []int32

func (w *Waiter) heapLess(a, b int32) bool {
	return w.ents[w.byDL[a]].deadline < w.ents[w.byDL[b]].deadline
}

func (w *Waiter) heapSwap(a, b int32) {
	h := w.byDL
	h[a], h[b] = h[b], h[a]
	w.ents[h[a]].hidx = a
	w.ents[h[b]].hidx = b
}

func (w *Waiter) heapUp(j int32) {
	for j > 0 {
		p := (j - 1) / 2
		if !w.heapLess(j, p) {
			return
		}
		w.heapSwap(j, p)
		j = p
	}
}

func (w *Waiter) heapDown(j int32) {
	n := int32(len(w.byDL))
	for {
		l := 2*j + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && w.heapLess(r, l) {
			m = r
		}
		if !w.heapLess(m, j) {
			return
		}
		w.heapSwap(j, m)
		j = m
	}
}

func (w *Waiter) heapPush(i int32) {
	w.ents[i].hidx = int32(len(w.byDL))
	w.byDL = append(w.byDL, i)
	w.heapUp(w.ents[i].hidx)
}

func (w *Waiter) heapRemove(j int32) {
	last := int32(len(w.byDL) - 1)
	i := w.byDL[j]
	if j != last {
		w.heapSwap(j, last)
	}
	w.byDL = w.byDL[:last]
	w.ents[i].hidx = -1
	if j != last {
		w.heapDown(j)
		w.heapUp(j)
	}
}
