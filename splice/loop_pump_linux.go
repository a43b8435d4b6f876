//go:build linux

package splice

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// lpipe is a splice pipe: its read and write ends.
type lpipe struct{ r, w int32 }

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

// pump moves bytes of direction di until its source is drained, its
// destination is full, it ends, or it used its share of the turn.
func (w *worker) pump(j *ljoin, di Flow) {
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
func (w *worker) readOnce(j *ljoin, di Flow) bool {
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
func (w *worker) readEOF(j *ljoin, di Flow) bool {
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
func (w *worker) flushBuf(j *ljoin, di Flow) bool {
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
func (w *worker) writeFailed(j *ljoin, di Flow, op string, err error) {
	if err == unix.EAGAIN {
		j.dirs[di].blocked = true
		return
	}
	w.fail(j, 1-int(di), op, err)
}

// spliceIn moves what the source holds into the direction's pipe.
func (w *worker) spliceIn(j *ljoin, di Flow) bool {
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
func (w *worker) flushPipe(j *ljoin, di Flow) bool {
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
func (w *worker) account(j *ljoin, di Flow, n int, spliced bool) {
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
func (w *worker) dirEOF(j *ljoin, di Flow) {
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
