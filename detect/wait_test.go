package detect_test

import (
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
)

type waited struct {
	c   net.Conn
	err error
	at  time.Time
}

func waitInto(ch chan<- waited) func(net.Conn, error) {
	return func(c net.Conn, err error) { ch <- waited{c, err, time.Now()} }
}

// TestWaiterReady: a connection is reported ready when its client writes, and nothing was
// read from it: the bytes are all there for the next reader.
func TestWaiterReady(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var w detect.Waiter
	defer w.Close()
	client, server := tcpPair(t)
	defer client.Close()
	ch := make(chan waited, 1)
	w.Wait(server, 10*time.Second, waitInto(ch))
	select {
	case <-ch:
		t.Fatal("ready before the client wrote")
	case <-time.After(50 * time.Millisecond):
	}
	assert.Equal(t, 1, w.Len())
	_, err := client.Write([]byte("hello"))
	require.NoError(t, err)
	got := recv(t, ch, "ready")
	require.NoError(t, got.err)
	assert.Same(t, server, got.c.(*net.TCPConn), "the very connection comes back")
	b := make([]byte, 5)
	_, err = io.ReadFull(bounded(got.c), b)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	got.c.Close()
	st := w.Stats()
	assert.Equal(t, detect.WaitStats{Ready: 1}, st)
}

// TestWaiterReadyOnClose: a client that closes without a byte is ready too (the reader sees EOF).
func TestWaiterReadyOnClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var w detect.Waiter
	defer w.Close()
	client, server := tcpPair(t)
	ch := make(chan waited, 1)
	w.Wait(server, 10*time.Second, waitInto(ch))
	client.Close()
	got := recv(t, ch, "ready")
	require.NoError(t, got.err)
	_, err := bounded(got.c).Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF)
	got.c.Close()
}

// TestWaiterTimeout: silence ends with ErrWaitTimeout after the timeout, and a later, shorter
// wait wakes the Waiter's sleeping goroutine (it does not wait out the longer one).
func TestWaiterTimeout(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var w detect.Waiter
	defer w.Close()
	c1, s1 := tcpPair(t)
	defer c1.Close()
	c2, s2 := tcpPair(t)
	defer c2.Close()
	long := make(chan waited, 1)
	short := make(chan waited, 1)
	w.Wait(s1, time.Hour, waitInto(long))
	time.Sleep(20 * time.Millisecond) // the goroutine sleeps until the hour is up
	start := time.Now()
	w.Wait(s2, 80*time.Millisecond, waitInto(short))
	got := recv(t, short, "the short wait to time out")
	assert.ErrorIs(t, got.err, detect.ErrWaitTimeout)
	assert.ErrorIs(t, got.err, errors.Unwrap(detect.ErrWaitTimeout))
	assert.GreaterOrEqual(t, got.at.Sub(start), 80*time.Millisecond, "not before its timeout")
	got.c.Close()
	assert.Equal(t, 1, w.Len(), "the hour-long wait still waits")
	require.NoError(t, w.Close())
	got = recv(t, long, "Close to end the long wait")
	assert.ErrorIs(t, got.err, detect.ErrWaiterClosed)
	assert.ErrorIs(t, got.err, net.ErrClosed)
	got.c.Close()
	st := w.Stats()
	assert.Equal(t, uint64(1), st.TimedOut)
	assert.Equal(t, uint64(1), st.Closed)
	assert.Zero(t, st.Waiting)

	// After Close, a Wait is ended at once.
	c3, s3 := tcpPair(t)
	defer c3.Close()
	after := make(chan waited, 1)
	w.Wait(s3, time.Second, waitInto(after))
	got = recv(t, after, "a Wait after Close")
	assert.ErrorIs(t, got.err, detect.ErrWaiterClosed)
	got.c.Close()
}

// TestWaiterShedsOldest: a full Waiter sheds the connection that waited longest, and only that
// one, to take a new one: accepting never stops.
func TestWaiterShedsOldest(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	w := detect.Waiter{Max: 3, ReduceAt: 1}
	defer w.Close()
	var clients, servers []*net.TCPConn
	for range 5 {
		c, s := tcpPair(t)
		defer c.Close()
		clients, servers = append(clients, c), append(servers, s)
	}
	chans := make([]chan waited, 5)
	for i := range 3 {
		chans[i] = make(chan waited, 1)
		w.Wait(servers[i], time.Hour, waitInto(chans[i]))
	}
	for i := 3; i < 5; i++ {
		chans[i] = make(chan waited, 1)
		w.Wait(servers[i], time.Hour, waitInto(chans[i]))
		got := recv(t, chans[i-3], "the oldest to be shed")
		assert.ErrorIs(t, got.err, detect.ErrShed)
		assert.Same(t, servers[i-3], got.c.(*net.TCPConn))
		got.c.Close()
		assert.Equal(t, 3, w.Len())
	}
	// The survivors are the newest three, still served when they speak.
	for i := 2; i < 5; i++ {
		_, err := clients[i].Write([]byte{'x'})
		require.NoError(t, err)
		got := recv(t, chans[i], "a survivor to be ready")
		assert.NoError(t, got.err)
		got.c.Close()
	}
	st := w.Stats()
	assert.Equal(t, uint64(2), st.Shed)
	assert.Equal(t, uint64(3), st.Ready)
}

// TestWaiterReducesTimeouts: above ReduceAt×Max, new waits get shorter timeouts, down to
// MinTimeout when full.
func TestWaiterReducesTimeouts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	w := detect.Waiter{Max: 10, ReduceAt: 0.5, MinTimeout: 100 * time.Millisecond}
	defer w.Close()
	assert.Equal(t, 10*time.Second, w.Timeout(10*time.Second), "empty: no reduction")
	var ends []chan waited
	for i := range 9 {
		c, s := tcpPair(t)
		defer c.Close()
		ch := make(chan waited, 1)
		ends = append(ends, ch)
		w.Wait(s, 10*time.Second, waitInto(ch))
		switch i {
		case 4:
			assert.Equal(t, 10*time.Second, w.Timeout(10*time.Second), "at half: no reduction yet")
		case 6:
			// 7 of 10 waiting: 40% of the way from half to full.
			assert.InDelta(t, float64(10*time.Second-time.Duration(0.4*float64(9900*time.Millisecond))),
				float64(w.Timeout(10*time.Second)), float64(time.Microsecond))
		}
	}
	assert.Equal(t, 50*time.Millisecond, w.Timeout(50*time.Millisecond), "a timeout under the floor is kept")
	assert.Equal(t, uint64(3), w.Stats().Reduced, "the 7th, 8th and 9th waits were reduced")
	require.NoError(t, w.Close())
	for _, ch := range ends {
		got := recv(t, ch, "Close")
		got.c.Close()
	}
}

// TestWaiterHoldsNoGoroutine: a thousand silent connections waiting cost no goroutine each.
func TestWaiterHoldsNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const n = 1000
	raiseNoFile(t, 2*n+256)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var w detect.Waiter
	before := runtime.NumGoroutine()
	var clients []net.Conn
	ends := make(chan waited, n)
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		clients = append(clients, c)
		s, err := ln.Accept()
		require.NoError(t, err)
		w.Wait(s, time.Hour, waitInto(ends))
	}
	assert.Equal(t, n, w.Len())
	assert.LessOrEqual(t, runtime.NumGoroutine()-before, 2, "one goroutine for the Waiter, none per connection")
	require.NoError(t, w.Close())
	for range n {
		got := recv(t, ends, "Close to end every wait")
		assert.ErrorIs(t, got.err, detect.ErrWaiterClosed)
		got.c.Close()
	}
	for _, c := range clients {
		c.Close()
	}
}

// TestWaiterOtherConns: a connection that is not a TCP socket is ready at once (its reader
// waits), and so is one whose wrapper may already hold bytes.
func TestWaiterOtherConns(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var w detect.Waiter
	defer w.Close()
	a, b := net.Pipe()
	defer a.Close()
	ch := make(chan waited, 1)
	w.Wait(b, time.Hour, waitInto(ch))
	got := recv(t, ch, "a pipe to be ready at once")
	assert.NoError(t, got.err)
	got.c.Close()
	assert.Zero(t, w.Len())
}

// TestWaitStatsAdd: Add sums every field (a field left out would read 1, not 3).
func TestWaitStatsAdd(t *testing.T) {
	one := detect.WaitStats{Waiting: 1, Ready: 1, TimedOut: 1, Shed: 1, Reduced: 1, Closed: 1, Detached: 1}
	two := detect.WaitStats{Waiting: 2, Ready: 2, TimedOut: 2, Shed: 2, Reduced: 2, Closed: 2, Detached: 2}
	assert.Equal(t, detect.WaitStats{Waiting: 3, Ready: 3, TimedOut: 3, Shed: 3, Reduced: 3, Closed: 3, Detached: 3}, one.Add(two))
}
