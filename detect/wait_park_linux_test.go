package detect_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
)

// waitDetached waits until w has detached n connections in all.
func waitDetached(t *testing.T, w *detect.Waiter, n uint64) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for w.Stats().Detached < n {
		require.True(t, time.Now().Before(deadline), "%d connections detached in time (%d were)", n, w.Stats().Detached)
		time.Sleep(5 * time.Millisecond)
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// TestWaiterParkDetaches: a connection handed to Park is, once detached, held by its descriptor
// alone (Go's objects for it are collected), and comes back ready as a new connection on the
// same socket with nothing lost, in both directions.
func TestWaiterParkDetaches(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	w := detect.Waiter{DetachAfter: -1}
	defer w.Close()
	client, server := tcpPair(t)
	defer client.Close()
	laddr, raddr := server.LocalAddr().String(), server.RemoteAddr().String()
	gone := weak.Make(server)
	ch := make(chan waited, 1)
	w.Park(server, time.Hour, waitInto(ch))
	server = nil
	waitDetached(t, &w, 1)
	for range 3 {
		runtime.GC()
	}
	assert.Nil(t, gone.Value(), "the Waiter keeps no hold on a detached connection")
	select {
	case <-ch:
		t.Fatal("ready before the client wrote")
	default:
	}
	_, err := client.Write([]byte("hello"))
	require.NoError(t, err)
	got := recv(t, ch, "ready")
	require.NoError(t, got.err)
	c, ok := got.c.(*net.TCPConn)
	require.True(t, ok, "a *net.TCPConn comes back, not %T", got.c)
	defer c.Close()
	assert.Equal(t, laddr, c.LocalAddr().String())
	assert.Equal(t, raddr, c.RemoteAddr().String())
	b := make([]byte, 5)
	_, err = io.ReadFull(bounded(c), b)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	_, err = c.Write([]byte("back"))
	require.NoError(t, err)
	_, err = io.ReadFull(bounded(client), b[:4])
	require.NoError(t, err)
	assert.Equal(t, "back", string(b[:4]))
	assert.Equal(t, detect.WaitStats{Ready: 1, Detached: 1}, w.Stats())
}

// TestWaiterParkBeforeDetach: a connection ready before DetachAfter comes back as itself.
func TestWaiterParkBeforeDetach(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	w := detect.Waiter{DetachAfter: time.Hour}
	defer w.Close()
	client, server := tcpPair(t)
	defer client.Close()
	ch := make(chan waited, 1)
	w.Park(server, time.Hour, waitInto(ch))
	_, err := client.Write([]byte{'x'})
	require.NoError(t, err)
	got := recv(t, ch, "ready")
	require.NoError(t, got.err)
	assert.Same(t, server, got.c.(*net.TCPConn))
	got.c.Close()
	assert.Equal(t, detect.WaitStats{Ready: 1}, w.Stats())
}

// TestWaiterParkEnds: a detached connection that times out, is shed or is still waiting at
// Close is closed by the Waiter (its client sees the end) and its ready function gets nil. With
// ParkKeeps, one that times out or is shed comes back to ready instead, as a new connection on
// the same socket with the error, and carries bytes both ways; Close still closes. No descriptor
// is left behind either way.
func TestWaiterParkEnds(t *testing.T) {
	for _, keeps := range []bool{false, true} {
		t.Run(fmt.Sprintf("ParkKeeps=%v", keeps), func(t *testing.T) { testParkEnds(t, keeps) })
	}
}

func testParkEnds(t *testing.T, keeps bool) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	before := openFDs(t)
	w := detect.Waiter{Max: 2, ReduceAt: 1, DetachAfter: -1, ParkKeeps: keeps}
	var clients []*net.TCPConn
	var chans []chan waited
	park := func(timeout time.Duration) {
		c, s := tcpPair(t)
		clients = append(clients, c)
		chans = append(chans, make(chan waited, 1))
		w.Park(s, timeout, waitInto(chans[len(chans)-1]))
	}
	ended := func(i int, want error, what string) {
		t.Helper()
		got := recv(t, chans[i], what)
		assert.ErrorIs(t, got.err, want, what)
		assert.Nil(t, got.c, what)
		_, err := bounded(clients[i]).Read(make([]byte, 1))
		assert.ErrorIs(t, err, io.EOF, "%s: the client sees the end", what)
	}
	kept := func(i int, want error, what string) {
		t.Helper()
		got := recv(t, chans[i], what)
		assert.ErrorIs(t, got.err, want, what)
		require.NotNil(t, got.c, "%s: the connection comes back", what)
		defer got.c.Close()
		_, err := clients[i].Write([]byte("late"))
		require.NoError(t, err)
		b := make([]byte, 4)
		_, err = io.ReadFull(bounded(got.c), b)
		require.NoError(t, err, what)
		assert.Equal(t, "late", string(b), what)
		_, err = got.c.Write([]byte("back"))
		require.NoError(t, err)
		_, err = io.ReadFull(bounded(clients[i]), b)
		require.NoError(t, err, what)
		assert.Equal(t, "back", string(b), what)
	}
	timedOutOrShed := ended
	if keeps {
		timedOutOrShed = kept
	}
	park(100 * time.Millisecond)
	park(time.Hour)
	waitDetached(t, &w, 2)
	timedOutOrShed(0, detect.ErrWaitTimeout, "the timeout")
	park(time.Hour) // 1 and 2 wait
	waitDetached(t, &w, 3)
	park(time.Hour) // sheds 1
	timedOutOrShed(1, detect.ErrShed, "the shed")
	waitDetached(t, &w, 4)
	require.NoError(t, w.Close())
	ended(2, detect.ErrWaiterClosed, "the close")
	ended(3, detect.ErrWaiterClosed, "the close")
	assert.Equal(t, detect.WaitStats{TimedOut: 1, Shed: 1, Closed: 2, Detached: 4}, w.Stats())
	for _, c := range clients {
		c.Close()
	}
	assert.Equal(t, before, openFDs(t), "descriptors open after")
}

// exhaustFDs leaves the process no descriptor to spare until the returned function runs: the
// soft RLIMIT_NOFILE lowered to a little above the open count, the rest filled with /dev/null.
// No other test may run meanwhile (none here is parallel).
func exhaustFDs(t *testing.T) (restore func()) {
	t.Helper()
	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old))
	// The limit bounds descriptor numbers: above the highest open one, with room for the loop.
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	highest := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			highest = max(highest, n)
		}
	}
	lim := old
	lim.Cur = uint64(highest) + 16
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	var fill []*os.File
	restore = func() {
		for _, f := range fill {
			f.Close()
		}
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old))
	}
	for range lim.Cur { // at most every number below the limit
		f, err := os.Open(os.DevNull)
		if err != nil {
			require.ErrorIs(t, err, syscall.EMFILE)
			return restore
		}
		fill = append(fill, f)
	}
	restore()
	t.Fatalf("descriptors left above the limit %d", lim.Cur)
	return nil
}

// TestWaiterParkNoDescriptor: a detached connection whose wait ends when the process has no
// descriptor to spare cannot be made a net.Conn again: ready gets nil and an error that says
// why (EMFILE, and the wait's own error with ParkKeeps), the socket is closed (the client sees
// the end), and nothing is left open once the descriptors are back. (Each such end frees a
// descriptor, the socket's: the cases run one at a time.)
func TestWaiterParkNoDescriptor(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	before := openFDs(t)
	w := detect.Waiter{DetachAfter: -1, ParkKeeps: true}
	defer w.Close()
	end := func(client *net.TCPConn, what string) {
		t.Helper()
		_, err := bounded(client).Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) { // the reset of a socket closed with bytes unread
			assert.ErrorIs(t, err, io.EOF, "%s: the client sees the end", what)
		}
		client.Close()
	}

	client, server := tcpPair(t)
	ch := make(chan waited, 1)
	w.Park(server, time.Hour, waitInto(ch))
	waitDetached(t, &w, 1)
	restore := exhaustFDs(t)
	_, err := client.Write([]byte("x"))
	require.NoError(t, err)
	got := recv(t, ch, "ready")
	restore()
	assert.Nil(t, got.c, "ready")
	assert.ErrorIs(t, got.err, syscall.EMFILE, "ready: why it could not be taken back")
	end(client, "ready")

	client, server = tcpPair(t)
	w.Park(server, 300*time.Millisecond, waitInto(ch))
	waitDetached(t, &w, 2)
	restore = exhaustFDs(t)
	got = recv(t, ch, "timed out")
	restore()
	assert.Nil(t, got.c, "timed out")
	assert.ErrorIs(t, got.err, syscall.EMFILE, "timed out, kept: why it could not be taken back")
	assert.ErrorIs(t, got.err, detect.ErrWaitTimeout, "timed out, kept: the wait's own error")
	end(client, "timed out")

	assert.Equal(t, detect.WaitStats{Ready: 1, TimedOut: 1, Detached: 2}, w.Stats())
	require.NoError(t, w.Close())
	assert.Equal(t, before, openFDs(t), "descriptors open after")
}

// TestMuxDetachedNoDescriptor: a mux's silent client, detached, that speaks when the process has
// no descriptor to spare is ended and reported as detect_failed with the reason (EMFILE), not
// left in flight; the mux serves again once descriptors are back.
func TestMuxDetachedNoDescriptor(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var events muxEvents
	m, serve := startMux(t, &detect.Detector{Timeout: time.Minute}, detect.MuxConfig{OnConn: events.add})
	echoDefault(t, m)
	serveErr := serve()
	c, err := net.Dial("tcp", m.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool { return m.Stats().Detached == 1 }, 3*detect.DefaultDetachAfter, 5*time.Millisecond)
	restore := exhaustFDs(t)
	_, err = c.Write([]byte("x"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return m.Stats().DetectFailed == 1 }, testWait, 5*time.Millisecond)
	restore()
	events.mu.Lock()
	evs := append([]detect.MuxEvent(nil), events.evs...)
	events.mu.Unlock()
	require.Len(t, evs, 1)
	assert.Equal(t, detect.MuxDetectFailed, evs[0].Outcome)
	assert.ErrorIs(t, evs[0].Err, syscall.EMFILE)
	assert.Zero(t, m.Stats().InFlight, "nothing left in flight")
	_, err = bounded(c).Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) { // closed with the byte unread
		assert.ErrorIs(t, err, io.EOF, "the client sees the end")
	}
	c2, err := net.Dial("tcp", m.Addr().String())
	require.NoError(t, err)
	defer c2.Close()
	roundTrip(t, c2, "\x00served again", "\x00served again")
	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
}
