//go:build linux

package splice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// newLoop returns a Loop with test hooks, closed at the end of the test.
func newLoop(t testing.TB, l *Loop) *Loop {
	t.Helper()
	l.hooks = &hooks{}
	t.Cleanup(func() { l.Close() })
	return l
}

// loopBytes is the size sent each way by the Loop's bulk test: 256 MiB,
// or 32 MiB under -race or -short.
func loopBytes() int64 {
	if testnet.RaceEnabled || testing.Short() {
		return 32 << 20
	}
	return 256 << 20
}

// assertLoopIdle checks that no join of l holds a pooled buffer or a pipe.
func assertLoopIdle(t testing.TB, l *Loop) {
	t.Helper()
	assertIdle(t, l.hooks)
}

// loopEngine runs the shared test bodies against Loop.
var loopEngine = relayEngine{
	name: "loop",
	start: func(t testing.TB, tr transport, cfg relayConfig, ctx context.Context, obs Observer) (*env, *hooks) {
		l := newLoop(t, &Loop{IdleTimeout: cfg.IdleTimeout, Lifetime: cfg.Lifetime, DisableSplice: cfg.DisableSplice})
		return newEnvLoop(t, tr, l, ctx, obs), l.hooks
	},
	startPipes: func(t testing.TB, a, b net.Conn) <-chan joinOut {
		l := newLoop(t, &Loop{})
		done := make(chan joinOut, 1)
		require.NoError(t, l.Start(context.Background(), a, b, nil, func(st Stats) { done <- joinOut{st, st.Err} }))
		return done
	},
}

// TestLoopBulkBothWays: TestBulkBothWays through Loop (TCP pairs splice
// more than half of their bulk, TLS goes to Joiner.Join), with loopBytes.
func TestLoopBulkBothWays(t *testing.T) { testBulkBothWays(t, loopEngine, loopBytes(), 5) }

// TestLoopSwitchSmallBulk: a direction that switches between small
// messages, bulk and idle pauses delivers every byte in order, both ways at
// once, through both paths, with and without splice.
func TestLoopSwitchSmallBulk(t *testing.T) {
	sizes := []int{1, 100, 1000, 64<<10 - 1, 64 << 10, 64<<10 + 1, 7, 1 << 20, 3, 3 << 20, 200000, 5, 4096, 2}
	next := func(i int) (int, time.Duration) {
		var pause time.Duration
		if i%3 == 2 {
			pause = 2 * time.Millisecond // let the direction go idle
		}
		return sizes[i%len(sizes)], pause
	}
	var total int64
	for _, s := range sizes {
		total += int64(s)
	}
	n := 2 * total
	for _, tr := range []transport{trTCP, trDetect} {
		for _, nosplice := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/nosplice=%v", tr, nosplice), func(t *testing.T) {
				l := newLoop(t, &Loop{DisableSplice: nosplice, Workers: 1})
				e := newEnvLoop(t, tr, l, context.Background(), nil)
				exchangeSchedule(t, e.client, e.server, n, next)
				r := e.wait(t)
				require.NoError(t, r.err)
				assert.Equal(t, n, r.st.BToA)
				assert.Equal(t, n+int64(len(preamble)), r.st.AToB)
				t.Logf("%d spliced in %d splice calls, %d through buffers",
					l.hooks.splicedBytes.Load(), l.hooks.spliceCalls.Load(), l.hooks.smallBytes.Load())
				if nosplice {
					assert.Zero(t, l.hooks.spliceCalls.Load())
				} else {
					assert.Positive(t, l.hooks.splicedBytes.Load(), "bulk went through splice")
				}
				assert.Positive(t, l.hooks.smallBytes.Load(), "small messages went through the buffer")
				assertLoopIdle(t, l)
			})
		}
	}
}

// TestLoopBackpressure: a receiver that reads slowly makes the relay's
// writes fail with EAGAIN; the bytes wait in the direction (a pooled buffer
// or the pipe) and all arrive in order.
func TestLoopBackpressure(t *testing.T) {
	for _, nosplice := range []bool{false, true} {
		t.Run(fmt.Sprintf("nosplice=%v", nosplice), func(t *testing.T) {
			l := newLoop(t, &Loop{DisableSplice: nosplice})
			e := newEnvLoop(t, trTCP, l, context.Background(), nil)
			const n = 24 << 20
			sent := make(chan error, 1)
			go func() {
				_, err := sendStream(e.client, 7, n, 100<<10)
				if err == nil {
					err = e.client.(*net.TCPConn).CloseWrite()
				}
				sent <- err
			}()
			// Read slowly at first, so that the relay's socket buffers fill.
			slow := &slowReader{r: e.server, until: time.Now().Add(time.Second)}
			_, err := recvStream(slow, 7, n)
			require.NoError(t, err)
			require.NoError(t, <-sent)
			e.server.(*net.TCPConn).CloseWrite()
			r := e.wait(t)
			require.NoError(t, r.err)
			assert.Equal(t, int64(n+len(preamble)), r.st.AToB)
			assertLoopIdle(t, l)
		})
	}
}

type slowReader struct {
	r     io.Reader
	until time.Time
}

func (s *slowReader) Read(b []byte) (int, error) {
	if time.Now().Before(s.until) {
		time.Sleep(20 * time.Millisecond)
		b = b[:min(len(b), 4096)]
	}
	return s.r.Read(b)
}

// TestLoopHalfClose: TestHalfClose through Loop.
func TestLoopHalfClose(t *testing.T) { testHalfClose(t, loopEngine) }

// TestLoopResetPropagation: TestResetPropagation through Loop.
func TestLoopResetPropagation(t *testing.T) { testResetPropagation(t, loopEngine) }

func TestLoopIdleTimeout(t *testing.T) { testIdleTimeout(t, loopEngine) }

func TestLoopLifetime(t *testing.T) { testLifetime(t, loopEngine) }

func TestLoopCancel(t *testing.T) { testCancel(t, loopEngine) }

// TestLoopClose: Close ends live joins (done is called for each, with
// ErrLoopClosed), waits for its goroutines, and Start after it fails.
func TestLoopClose(t *testing.T) {
	l := &Loop{hooks: &hooks{}}
	var envs []*env
	for _, tr := range []transport{trTCP, trTCP, trDetect, trTLS} {
		envs = append(envs, newEnvLoop(t, tr, l, context.Background(), nil))
	}
	require.NoError(t, l.Close())
	for _, e := range envs {
		select {
		case r := <-e.done:
			assert.ErrorIs(t, r.err, ErrLoopClosed)
			assert.ErrorIs(t, r.err, net.ErrClosed)
			assert.Equal(t, EndCanceled, r.st.End)
		default:
			t.Fatal("Close returned before the join's done was called")
		}
		e.client.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.ReadAll(e.client)
		assert.False(t, isDeadline(err), "client connection was closed")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	err := l.Start(context.Background(), a, b, nil, nil)
	assert.ErrorIs(t, err, ErrLoopClosed)
	assert.NoError(t, l.Close(), "a second Close")
	var never Loop
	assert.NoError(t, never.Close(), "Close of a Loop never started")
	assert.ErrorIs(t, never.Start(context.Background(), a, b, nil, nil), net.ErrClosed)
}

// dialPair returns a client connected to a relay-side conn a accepted from
// a fresh listener.
func dialPair(t testing.TB) (client, a net.Conn) {
	t.Helper()
	ln := listen(t)
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	a = <-acc
	require.NotNil(t, a)
	t.Cleanup(func() { client.Close(); a.Close() })
	return client, a
}

// TestLoopDialRefused: StartDial to a port nobody listens on resets a and
// reports the refusal in Stats.Err.
func TestLoopDialRefused(t *testing.T) {
	ln := listen(t)
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	l := newLoop(t, &Loop{})
	client, a := dialPair(t)
	done := make(chan Stats, 1)
	require.NoError(t, l.StartDial(context.Background(), a, addr, nil, func(st Stats) { done <- st }))
	st := waitDone(t, done)
	require.Error(t, st.Err)
	assertRefused(t, st, "connect")
	assert.Equal(t, "ECONNREFUSED", Errno(st.Err))
	assert.Equal(t, SideB, st.First)
	client.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.ReadAll(client)
	assert.ErrorIs(t, err, syscall.ECONNRESET, "the client is reset")
}

// TestLoopDial: StartDial connects to an echo server; the replay bytes of a
// detected connection go first, then the bytes that follow, both ways.
func TestLoopDial(t *testing.T) {
	echo, stop := startEcho(t, func(c net.Conn) net.Conn { return c })
	defer stop()
	addr := netip.MustParseAddrPort(echo)
	for _, tr := range []transport{trTCP, trDetect} {
		t.Run(string(tr), func(t *testing.T) {
			l := newLoop(t, &Loop{})
			client, a := dialPair(t)
			_, err := client.Write([]byte("first bytes;"))
			require.NoError(t, err)
			if tr == trDetect {
				buf := make([]byte, len("first bytes;"))
				_, err := io.ReadFull(a, buf)
				require.NoError(t, err)
				a = detect.NewReplayConn(a.(*net.TCPConn), buf)
			}
			done := make(chan Stats, 1)
			require.NoError(t, l.StartDial(context.Background(), a, addr, nil, func(st Stats) { done <- st }))
			_, err = client.Write([]byte("then these"))
			require.NoError(t, err)
			big := make([]byte, 2<<20)
			for i := range big {
				big[i] = byte(i % 251)
			}
			go func() {
				client.Write(big)
				client.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(client)
			require.NoError(t, err)
			want := append([]byte("first bytes;then these"), big...)
			require.Equal(t, len(want), len(got))
			require.Equal(t, want, got)
			st := waitDone(t, done)
			require.NoError(t, st.Err)
			assert.Equal(t, int64(len(want)), st.AToB)
			assert.Equal(t, int64(len(want)), st.BToA)
			assert.Equal(t, SideA, st.First)
			assertLoopIdle(t, l)
		})
	}
}

// TestLoopDialFallback: StartDial with a connection that is not TCP dials
// with net.Dialer in the fallback goroutine.
func TestLoopDialFallback(t *testing.T) {
	echo, stop := startEcho(t, func(c net.Conn) net.Conn { return c })
	defer stop()
	l := newLoop(t, &Loop{})
	a, client := net.Pipe()
	done := make(chan Stats, 1)
	require.NoError(t, l.StartDial(context.Background(), a, netip.MustParseAddrPort(echo), nil, func(st Stats) { done <- st }))
	helloRoundTrip(t, client)
	client.Close()
	assertHello(t, waitDone(t, done), "a clean close of the client")

	// Refused, through the fallback.
	ln := listen(t)
	refused := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	a2, client2 := net.Pipe()
	defer client2.Close()
	require.NoError(t, l.StartDial(context.Background(), a2, refused, nil, func(st Stats) { done <- st }))
	assertRefused(t, waitDone(t, done), "dial")
}

// TestLoopDialIPv6: StartDial connects over IPv6 too (the loop builds the
// sockaddr_in6 itself), and a refused IPv6 connect is reported like an
// IPv4 one.
func TestLoopDialIPv6(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	echo, stop := startEchoOn(t, "[::1]:0", func(c net.Conn) net.Conn { return c })
	addr := netip.MustParseAddrPort(echo)
	l := newLoop(t, &Loop{})
	client, a := dialPair(t)
	done := make(chan Stats, 1)
	require.NoError(t, l.StartDial(context.Background(), a, addr, nil, func(st Stats) { done <- st }))
	helloRoundTrip(t, client)
	require.NoError(t, client.(*net.TCPConn).CloseWrite())
	assertHello(t, waitDone(t, done))

	stop() // the listening socket closes: the next connect is refused
	client2, a2 := dialPair(t)
	defer client2.Close()
	require.NoError(t, l.StartDial(context.Background(), a2, addr, nil, func(st Stats) { done <- st }))
	assertRefused(t, waitDone(t, done), "connect")
}

// TestLoopLingerFallback: a socket set to linger on close (SO_LINGER with
// a timeout) is left to Joiner.Join in a goroutine, since the workers close
// their sockets without telling the scheduler; without it the loop takes
// the socket (closing a as a net.Conn). Bytes move either way.
func TestLoopLingerFallback(t *testing.T) {
	echo, stop := startEcho(t, func(c net.Conn) net.Conn { return c })
	defer stop()
	l := newLoop(t, &Loop{})
	for _, linger := range []bool{false, true} {
		client, a := dialPair(t)
		if linger {
			require.NoError(t, a.(*net.TCPConn).SetLinger(5))
		}
		done := make(chan Stats, 1)
		require.NoError(t, l.StartDial(context.Background(), a, netip.MustParseAddrPort(echo), nil, func(st Stats) { done <- st }))
		rc, err := a.(*net.TCPConn).SyscallConn()
		require.NoError(t, err)
		ctlErr := rc.Control(func(uintptr) {})
		if linger {
			assert.NoError(t, ctlErr, "a lingering socket stays with a, for Joiner.Join")
		} else {
			assert.ErrorIs(t, ctlErr, net.ErrClosed, "the loop took a's socket and closed a")
		}
		helloRoundTrip(t, client)
		client.Close()
		assertHello(t, waitDone(t, done), "linger=%v: a clean close of the client", linger)
	}
}

// TestLoopServeDialLinger: a listening socket set to linger on close (its
// accepted sockets inherit SO_LINGER) is served through Go's Accept and
// StartDial, which hands each lingering connection to Joiner.Join; bytes
// move all the same.
func TestLoopServeDialLinger(t *testing.T) {
	echo, stop := startEcho(t, func(c net.Conn) net.Conn { return c })
	defer stop()
	l := newLoop(t, &Loop{})
	ln := listen(t).(*net.TCPListener)
	require.NoError(t, setLinger(ln, 5))
	dones := make(chan Stats, 1)
	served := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		served <- l.ServeDial(ctx, ln, netip.MustParseAddrPort(echo), nil, func(st Stats) { dones <- st })
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	helloRoundTrip(t, c)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	rest, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Empty(t, rest)
	assertHello(t, waitDone(t, dones))
	rc, err := ln.SyscallConn()
	require.NoError(t, err)
	assert.NoError(t, rc.Control(func(uintptr) {}), "ln stays open: Go's Accept serves it (the workers' path closes it at once)")
	cancel()
	waitServed(t, served, context.Canceled)
}

// TestLoopPipes: a pair of net.Pipe ends goes to Joiner.Join in a
// goroutine; bytes move and done is called.
func TestLoopPipes(t *testing.T) { testPipes(t, loopEngine) }

// TestLoopIdleHoldsNothing: idle joined connections hold no goroutine, no
// pipe, no pooled buffer, and exactly their two sockets.
func TestLoopIdleHoldsNothing(t *testing.T) {
	const n = 200
	l := newLoop(t, &Loop{})
	// Start the workers, and let one join use a pipe, so that the
	// worker's pipe cache is not counted as growth.
	warm := newEnvLoop(t, trTCP, l, context.Background(), nil)
	exchange(t, warm.client, warm.server, 4<<20, 1<<20)
	warm.wait(t)

	// goroutines and descriptors other than pipes, once they stop changing
	stable := func() (goroutines, fds int) {
		eventually(10*time.Second, func() bool {
			runtime.GC()
			all, pipes := countFDs(t)
			g, f := runtime.NumGoroutine(), all-pipes
			same := g == goroutines && f == fds
			goroutines, fds = g, f
			return same
		})
		return goroutines, fds
	}
	g0, fd0 := stable()
	envs := make([]*env, n)
	for i := range envs {
		e := newEnvLoop(t, trTCP, l, context.Background(), nil)
		envs[i] = e
		if i%10 == 0 {
			// Bulk both ways (spliced), then a small message each way.
			exchangeOpen(t, e.client, e.server, 2<<20)
		}
		exchangeOpen(t, e.client, e.server, 10)
	}
	assertLoopIdle(t, l)
	g1, fd1 := stable()
	t.Logf("%d idle joins: goroutines %d -> %d, descriptors %d -> %d", n, g0, g1, fd0, fd1)
	assert.LessOrEqual(t, g1, g0, "no goroutine per idle join")
	// The workers' epoll sets hold exactly the two sockets of each join
	// (and each worker's eventfd).
	watched := 0
	for _, w := range l.eng.workers {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", w.epfd))
		require.NoError(t, err)
		watched += strings.Count(string(b), "\ntfd:")
	}
	assert.Equal(t, 2*n+len(l.eng.workers), watched, "descriptors in the loop's epoll sets")
	// Each pipeline has the test's two ends and the relay's two sockets.
	assert.Equal(t, 4*n, fd1-fd0, "non-pipe descriptors: 2 test ends + 2 relay sockets per join, nothing else")
	_, pipes := countFDs(t)
	assert.LessOrEqual(t, pipes, maxFreePipes*len(l.eng.workers), "only the workers' pipe caches")
	assert.Zero(t, l.hooks.pipesOut.Load())
	assert.Zero(t, l.hooks.buffersOut.Load())

	for _, e := range envs {
		e.client.Close()
		e.server.Close()
	}
	for _, e := range envs {
		e.wait(t)
	}
	_, fd2 := stable()
	assert.Equal(t, fd0, fd2, "every descriptor closed after the joins ended")
}

// TestLoopWaitModes: the workers parked in Go's poller (the default) and
// blocked in epoll_wait both relay.
func TestLoopWaitModes(t *testing.T) {
	for _, blocking := range []bool{false, true} {
		t.Run(fmt.Sprintf("blocking=%v", blocking), func(t *testing.T) {
			l := newLoop(t, &Loop{blockingWait: blocking, Workers: 2})
			e := newEnvLoop(t, trTCP, l, context.Background(), nil)
			exchange(t, e.client, e.server, 8<<20, 64<<10)
			r := e.wait(t)
			require.NoError(t, r.err)
			require.Len(t, l.eng.workers, 2)
			for _, w := range l.eng.workers {
				// A worker parked in Go's poller reads its epoll set
				// through a RawConn; a blocking one has none.
				assert.Equal(t, blocking, w.rc == nil, "wait mode of the worker")
			}
		})
	}
}

// TestLoopServeDial: ServeDial accepts, dials and joins every connection
// until ctx is canceled (then the joins it started end and the listening
// socket is closed) or the loop is closed.
func TestLoopServeDial(t *testing.T) {
	echo, stop := startEcho(t, func(c net.Conn) net.Conn { return c })
	defer stop()
	addr := netip.MustParseAddrPort(echo)
	l := newLoop(t, &Loop{})
	ln := listen(t).(*net.TCPListener)
	lnAddr := ln.Addr().String()
	dones := make(chan Stats, 16)
	served := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		served <- l.ServeDial(ctx, ln, addr, nil, func(st Stats) { dones <- st })
	}()
	const n = 8
	for i := range n {
		c, err := net.Dial("tcp", lnAddr)
		require.NoError(t, err)
		msg := []byte(fmt.Sprintf("hello %d", i))
		_, err = c.Write(msg)
		require.NoError(t, err)
		require.NoError(t, c.(*net.TCPConn).CloseWrite())
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		assert.Equal(t, msg, got)
		c.Close()
		st := waitDone(t, dones)
		assert.NoError(t, st.Err)
		assert.Equal(t, int64(len(msg)), st.AToB)
		assert.Equal(t, int64(len(msg)), st.BToA)
	}
	// One join left open, then ctx: accepting stops, the join ends.
	c, err := net.Dial("tcp", lnAddr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 1))
	require.NoError(t, err)
	cancel()
	waitServed(t, served, context.Canceled)
	st := waitDone(t, dones)
	assert.ErrorIs(t, st.Err, context.Canceled)
	_, err = net.Dial("tcp", lnAddr)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the listening socket was closed")

	// Close of the loop stops it too, once it serves (a round trip through
	// ln3 proves that), and ends the join it serves.
	ln3 := listen(t).(*net.TCPListener)
	go func() { served <- l.ServeDial(context.Background(), ln3, addr, nil, nil) }()
	c3, err := net.Dial("tcp", ln3.Addr().String())
	require.NoError(t, err)
	defer c3.Close()
	c3.SetDeadline(time.Now().Add(30 * time.Second))
	helloRoundTrip(t, c3)
	require.NoError(t, l.Close())
	waitServed(t, served, ErrLoopClosed)
	_, err = c3.Read(make([]byte, 1))
	assert.Error(t, err, "Close ended the join")
}

// TestLoopResetWhileConnecting: a client that resets while StartDial's
// connect is still in progress (to a listener whose backlog is full, so
// that its SYNs go unanswered) ends the join at once, with the reset.
func TestLoopResetWhileConnecting(t *testing.T) {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(lfd)
	require.NoError(t, unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, unix.Listen(lfd, 0))
	sa, err := unix.Getsockname(lfd)
	require.NoError(t, err)
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	// Fill the backlog (never accepted).
	for range 3 {
		if c, err := net.DialTimeout("tcp", addr.String(), 200*time.Millisecond); err == nil {
			defer c.Close()
		}
	}
	l := newLoop(t, &Loop{})
	client, a := dialPair(t)
	done := make(chan Stats, 1)
	require.NoError(t, l.StartDial(context.Background(), a, addr, nil, func(st Stats) { done <- st }))
	select {
	case st := <-done:
		t.Fatalf("the join ended before the reset: %+v", st)
	case <-time.After(100 * time.Millisecond):
	}
	reset(client.(*net.TCPConn))
	select {
	case st := <-done:
		var se *Error
		require.ErrorAs(t, st.Err, &se)
		assert.Equal(t, SideA, se.Side)
		assert.ErrorIs(t, st.Err, syscall.ECONNRESET)
		assert.Equal(t, EndReset, st.End)
	case <-time.After(30 * time.Second):
		t.Fatal("the reset did not end the join")
	}
}

// TestLoopConcurrentJoins runs 1000 joins of small and medium transfers at
// once through ServeDial, and through Start with a detect.ReplayConn, and
// checks every byte of every one and every join's Stats.
func TestLoopConcurrentJoins(t *testing.T) {
	for _, mode := range []string{"servedial", "start"} {
		t.Run(mode, func(t *testing.T) {
			const n = 1000
			addr, stopEcho := startEcho(t, func(c net.Conn) net.Conn { return c })
			defer stopEcho()
			l := newLoop(t, &Loop{})
			ln := listen(t).(*net.TCPListener)
			front := ln.Addr().String()
			results := make(chan Stats, n)
			done := func(st Stats) { results <- st }
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			var fallbacks atomic.Int64 // start: joins Start left with a (Joiner.Join)
			if mode == "servedial" {
				go func() { served <- l.ServeDial(ctx, ln, netip.MustParseAddrPort(addr), nil, done) }()
			} else {
				go func() {
					defer ln.Close()
					for {
						a, err := ln.Accept()
						if err != nil {
							served <- err
							return
						}
						b, err := net.Dial("tcp", addr)
						if err != nil {
							a.Close()
							continue
						}
						if err := l.Start(context.Background(), detect.NewReplayConn(a.(*net.TCPConn), nil), b, nil, done); err != nil {
							a.Close()
							b.Close()
							continue
						}
						// The loop takes the socket and closes a; the
						// fallback leaves a open for Joiner.Join.
						if rc, err := a.(*net.TCPConn).SyscallConn(); err != nil || rc.Control(func(uintptr) {}) == nil {
							fallbacks.Add(1)
						}
					}
				}()
			}
			runClients(t, front, n, func(c net.Conn) net.Conn { return c })
			for range n {
				select {
				case st := <-results:
					require.NoError(t, st.Err)
					require.Equal(t, st.AToB, st.BToA, "echo: as many bytes back as forth")
					require.Positive(t, st.AToB)
				case <-time.After(30 * time.Second):
					t.Fatal("a join did not end")
				}
			}
			cancel()
			ln.Close()
			<-served
			assert.Zero(t, fallbacks.Load(), "every join ran in the loop")
			assertLoopIdle(t, l)
		})
	}
}

// filterConn is a replaying conn that, like package detect's gRPC active
// mode, must keep reading through its Read after the replay bytes: it drops
// a 4-byte "ACK!" that follows them, and reports a read hint in Buffered
// until it has.
type filterConn struct {
	replayConn
	filtering bool
	acc       []byte
}

func (f *filterConn) Buffered() int {
	n := len(f.buf)
	if f.filtering {
		n += 16 << 10
	}
	return n
}

func (f *filterConn) Read(b []byte) (int, error) {
	if len(f.buf) > 0 || !f.filtering {
		return f.replayConn.Read(b)
	}
	for len(f.acc) < 4 {
		tmp := make([]byte, 4-len(f.acc))
		n, err := f.Conn.Read(tmp)
		f.acc = append(f.acc, tmp[:n]...)
		if err != nil {
			return 0, err
		}
	}
	if string(f.acc) != "ACK!" {
		return 0, errors.New("filterConn: no ACK")
	}
	f.filtering = false
	return f.Conn.Read(b)
}

// TestLoopReplayStillFiltering: a wrapper that still reports Buffered
// bytes after its replay (detect's ACK filter) is not bypassed: the join
// goes to Joiner.Join, which reads through the wrapper, after the replay
// bytes Loop had already taken; the server sees them, then the bytes after
// the dropped ACK, in order.
func TestLoopReplayStillFiltering(t *testing.T) {
	l := newLoop(t, &Loop{})
	e := newEnvWith(t, trTCP, func(a, b net.Conn, out chan<- joinOut) {
		buf := make([]byte, len(preamble))
		_, err := io.ReadFull(a, buf)
		if err != nil {
			out <- joinOut{err: err}
			return
		}
		fc := &filterConn{replayConn: replayConn{Conn: a, buf: buf}, filtering: true}
		if err := l.Start(context.Background(), fc, b, nil, func(st Stats) { out <- joinOut{st, st.Err} }); err != nil {
			out <- joinOut{err: err}
		}
	})
	_, err := e.client.Write([]byte("ACK!hello, after the filter"))
	require.NoError(t, err)
	closeWrite(t, e.client)
	got, err := io.ReadAll(e.server)
	require.NoError(t, err)
	assert.Equal(t, "hello, after the filter", string(got))
	closeWrite(t, e.server)
	r := e.wait(t)
	require.NoError(t, r.err)
	assert.Equal(t, int64(len(preamble)+len("hello, after the filter")), r.st.AToB)
}

// TestLoopResetWhileBlocked: the client resets while the relay's direction
// from it waits for room at a server that does not read; the reset still
// ends the join at once and reaches the server.
func TestLoopResetWhileBlocked(t *testing.T) {
	l := newLoop(t, &Loop{})
	e := newEnvLoop(t, trTCP, l, context.Background(), nil)
	// The writes stop at the deadline, or at the reset below.
	e.client.SetWriteDeadline(time.Now().Add(30 * time.Second))
	wrote := flood(e.client)
	// Wait until bytes stop moving: the relay is blocked on the server.
	waitStuck(t, l.hooks)
	reset(e.clientTCP)
	<-wrote
	r := e.wait(t)
	var se *Error
	require.ErrorAs(t, r.err, &se)
	assert.Equal(t, SideA, se.Side)
	assert.ErrorIs(t, r.err, syscall.ECONNRESET)
	e.server.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, e.server)
	assert.ErrorIs(t, err, syscall.ECONNRESET, "the server is reset")
	assertLoopIdle(t, l)
}

// waitDone returns the Stats a join's done function sent on ch, failing the
// test if none comes within 30 s (a done that is never called must fail,
// not hang until the test binary's timeout).
// assertRefused checks that a join ended because its connection to B was
// refused, at step op ("connect" in the loop, "dial" in the fallback).
func assertRefused(t *testing.T, st Stats, op string) {
	t.Helper()
	assert.ErrorIs(t, st.Err, syscall.ECONNREFUSED)
	var se *Error
	require.ErrorAs(t, st.Err, &se)
	assert.Equal(t, SideB, se.Side)
	assert.Equal(t, op, se.Op)
}

// assertHello checks the Stats of a clean join that carried "hello" to an
// echo and back (helloRoundTrip).
func assertHello(t *testing.T, st Stats, msgAndArgs ...any) {
	t.Helper()
	assert.NoError(t, st.Err, msgAndArgs...)
	assert.Equal(t, int64(5), st.AToB, msgAndArgs...)
	assert.Equal(t, int64(5), st.BToA, msgAndArgs...)
}

// waitServed waits for ServeDial's result on served and checks that it is
// (or wraps) want.
// setLinger sets SO_LINGER with a timeout of sec seconds on a listening socket (accepted sockets
// inherit it).
func setLinger(ln *net.TCPListener, sec int) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: int32(sec)})
	}); err != nil {
		return err
	}
	return serr
}

func waitServed(t *testing.T, served <-chan error, want error) {
	t.Helper()
	select {
	case err := <-served:
		assert.ErrorIs(t, err, want)
	case <-time.After(30 * time.Second):
		t.Fatalf("ServeDial did not return (want %v)", want)
	}
}

func waitDone(t *testing.T, ch <-chan Stats) Stats {
	t.Helper()
	select {
	case st := <-ch:
		return st
	case <-time.After(30 * time.Second):
		t.Fatal("done not called")
		return Stats{}
	}
}
