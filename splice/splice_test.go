package splice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/internal/testnet"
)

// bulkBytes is the size sent each way by TestBulkBothWays: 1 GiB, or
// 64 MiB under -race or -short. SPLICE_BULK_BYTES overrides it.
func bulkBytes(t testing.TB) int64 {
	if s := os.Getenv("SPLICE_BULK_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err)
		return n
	}
	if testnet.RaceEnabled || testing.Short() {
		return 64 << 20
	}
	return 1 << 30
}

// counter is an Observer; zero counts the calls that reported no bytes
// (there must be none).
type counter struct{ n, zero [2]atomic.Int64 }

func (c *counter) Transferred(d Flow, n int64) {
	if n <= 0 {
		c.zero[d].Add(1)
	}
	c.n[d].Add(n)
}

func TestBulkBothWays(t *testing.T) {
	// Join: most of the bulk is spliced.
	testBulkBothWays(t, joinEngine, bulkBytes(t), 8)
}

// testBulkBothWays: every byte in order both ways at once, counted exactly
// by Stats and the Observer; on the TCP transports more than tenths/10 of
// the bytes are spliced, TLS is never spliced.
func testBulkBothWays(t *testing.T, eng relayEngine, n int64, tenths int64) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			var obs counter
			e, h := eng.start(t, tr, relayConfig{}, context.Background(), &obs)
			exchange(t, e.client, e.server, n, 256<<10)
			r := e.wait(t)
			require.NoError(t, r.err)
			pre := int64(len(preamble))
			assert.Equal(t, n+pre, r.st.AToB)
			assert.Equal(t, n, r.st.BToA)
			assert.Equal(t, r.st.AToB, obs.n[AToB].Load(), "observer saw every byte a->b")
			assert.Equal(t, r.st.BToA, obs.n[BToA].Load(), "observer saw every byte b->a")
			assert.Zero(t, obs.zero[AToB].Load()+obs.zero[BToA].Load(), "observer calls that reported no bytes")
			assert.Equal(t, EndEOF, r.st.End)
			assert.NotEqual(t, SideNone, r.st.First)
			assert.NoError(t, r.st.Err)
			spliced, small := h.splicedBytes.Load(), h.smallBytes.Load()
			t.Logf("%s/%s: %d bytes each way in %v, %d spliced in %d calls, %d through buffers",
				eng.name, tr, n, r.st.Duration, spliced, h.spliceCalls.Load(), small)
			assert.Equal(t, r.st.AToB+r.st.BToA, spliced+small, "every byte went one way or the other")
			if tr == trTLS {
				assert.Zero(t, spliced, "TLS cannot be spliced")
			} else {
				// Evidence that splice(2) carries the bulk.
				assert.Greater(t, spliced, (r.st.AToB+r.st.BToA)*tenths/10, "bulk is spliced")
			}
			assertIdle(t, h)
			assert.Zero(t, h.splicing.Load())
		})
	}
}

// TestSplicePipeInUse shows from the outside that a bulk transfer through
// two TCP connections uses a kernel pipe (splice's), and that the same
// transfer with DisableSplice never enters ReadFrom.
func TestSplicePipeInUse(t *testing.T) {
	j := &Joiner{hooks: &hooks{}}
	e := newEnv(t, trTCP, j, context.Background(), nil)
	sawPipe := make(chan bool, 1)
	stop := make(chan struct{})
	go func() {
		saw := false
		for !saw {
			select {
			case <-stop:
				sawPipe <- false
				return
			default:
			}
			if j.hooks.splicing.Load() > 0 {
				_, pipes := countFDs(t)
				saw = pipes > 0
			}
			time.Sleep(time.Millisecond)
		}
		sawPipe <- true
	}()
	go func() { io.Copy(io.Discard, e.client) }()
	deadline := time.Now().Add(30 * time.Second)
	buf := make([]byte, 1<<20)
	for j.hooks.spliceCalls.Load() < 50 && time.Now().Before(deadline) {
		_, err := e.server.Write(buf)
		require.NoError(t, err)
	}
	close(stop)
	assert.True(t, <-sawPipe, "a pipe was open while ReadFrom was in flight")
	assert.GreaterOrEqual(t, j.hooks.spliceCalls.Load(), int64(50))

	// The user-space comparison: no ReadFrom at all.
	j2 := &Joiner{hooks: &hooks{}, DisableSplice: true}
	e2 := newEnv(t, trTCP, j2, context.Background(), nil)
	exchange(t, e2.client, e2.server, 32<<20, 1<<20)
	r := e2.wait(t)
	require.NoError(t, r.err)
	assert.Zero(t, j2.hooks.spliceCalls.Load())
	assert.Equal(t, r.st.AToB+r.st.BToA, j2.hooks.smallBytes.Load())
}

// TestHalfClose: one side sends a request and shuts its write half; it
// still gets the whole response. Both directions, every transport.
func TestHalfClose(t *testing.T) { testHalfClose(t, joinEngine) }

func testHalfClose(t *testing.T, eng relayEngine) {
	for _, tr := range transports {
		for _, first := range []Side{SideA, SideB} {
			t.Run(string(tr)+"/"+first.String()+"_closes_first", func(t *testing.T) {
				e, h := eng.start(t, tr, relayConfig{}, context.Background(), nil)
				closer, other := e.client, e.server
				if first == SideB {
					closer, other = e.server, e.client
				}
				req := []byte("request: all of it, then FIN")
				_, err := closer.Write(req)
				require.NoError(t, err)
				closeWrite(t, closer)
				got, err := io.ReadAll(other)
				require.NoError(t, err)
				require.Equal(t, req, got, "request, then EOF")

				// The other direction still flows, after the half-close.
				resp := make([]byte, 3<<20) // big enough to be spliced
				for i := range resp {
					resp[i] = byte(i * 7)
				}
				go func() {
					other.Write(resp)
					closeWrite(t, other)
				}()
				got, err = io.ReadAll(closer)
				require.NoError(t, err)
				require.Equal(t, resp, got)

				r := e.wait(t)
				require.NoError(t, r.err)
				assert.Equal(t, first, r.st.First)
				assert.Equal(t, EndEOF, r.st.End)
				assertIdle(t, h)
			})
		}
	}
}

// TestResetPropagation: a reset on one side becomes a reset on the other,
// not a clean close, and Stats names the side; also after the resetter
// half-closed (nothing reads its socket in the relay any more, the reset
// must still be seen; TLS is left out, its half-close ends the session).
func TestResetPropagation(t *testing.T) { testResetPropagation(t, joinEngine) }

func testResetPropagation(t *testing.T, eng relayEngine) {
	for _, tr := range transports {
		for _, side := range []Side{SideA, SideB} {
			for _, halfClosed := range []bool{false, true} {
				if halfClosed && tr == trTLS {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s_resets/half_closed=%v", tr, side, halfClosed), func(t *testing.T) {
					e, h := eng.start(t, tr, relayConfig{}, context.Background(), nil)
					resetter, other := e.clientTCP, e.server
					resetterConn := e.client
					if side == SideB {
						resetter, other, resetterConn = e.serverTCP, e.client, e.server
					}
					// Some traffic first, so that the TLS handshakes are done.
					_, err := other.Write([]byte("hello"))
					require.NoError(t, err)
					if halfClosed {
						closeWrite(t, resetterConn)
						require.True(t, eventually(10*time.Second, func() bool {
							select {
							case <-e.done:
								return true
							default:
							}
							buf := make([]byte, 16)
							other.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
							_, err := other.Read(buf)
							return errors.Is(err, io.EOF)
						}), "EOF passed on")
					}
					reset(resetter)
					other.SetReadDeadline(time.Now().Add(30 * time.Second))
					_, err = io.ReadAll(other)
					if halfClosed {
						// The other peer's socket was reset: a read or a
						// write says so.
						if err == nil {
							_, err = other.Write([]byte("x"))
							if err == nil {
								time.Sleep(50 * time.Millisecond)
								_, err = other.Write([]byte("x"))
							}
						}
						assert.True(t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE), "peer sees a reset, got %v", err)
					} else {
						require.Error(t, err)
						assert.True(t, errors.Is(err, syscall.ECONNRESET), "peer sees a reset, got %v", err)
					}

					r := e.wait(t)
					require.Error(t, r.err)
					var se *Error
					require.ErrorAs(t, r.err, &se)
					assert.Equal(t, side, se.Side)
					assert.Contains(t, []string{"ECONNRESET", "EPIPE"}, Errno(r.err))
					assert.Equal(t, side, r.st.First)
					if halfClosed {
						assert.Equal(t, EndEOF, r.st.End, "the first ending was the half-close")
					} else {
						assert.Equal(t, EndReset, r.st.End)
					}
					assertIdle(t, h)
				})
			}
		}
	}
}

func TestIdleTimeout(t *testing.T) { testIdleTimeout(t, joinEngine) }

func testIdleTimeout(t *testing.T, eng relayEngine) {
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			t.Parallel() // mostly waiting: the transports side by side
			// Generous: a starved test goroutine on a loaded 2-core machine
			// must not look like an idle connection.
			const idle = time.Second
			e, h := eng.start(t, tr, relayConfig{IdleTimeout: idle}, context.Background(), nil)
			// Traffic in one direction only, for several idle periods,
			// keeps the join alive.
			go io.Copy(io.Discard, e.server)
			end := time.Now().Add(3 * idle)
			var lastWrite time.Time
			for time.Now().Before(end) {
				// Taken before the write: the relay moves the bytes after it, so its
				// idle timer cannot fire before lastWrite+idle, however late this
				// goroutine runs on a loaded machine.
				lastWrite = time.Now()
				_, err := e.client.Write([]byte("tick"))
				require.NoError(t, err, "join ended while bytes were moving")
				time.Sleep(idle / 50)
			}
			select {
			case r := <-e.done:
				t.Fatalf("join ended while busy: %+v", r)
			default:
			}
			r := e.wait(t)
			assert.ErrorIs(t, r.err, ErrIdleTimeout)
			assert.Equal(t, EndIdleTimeout, r.st.End)
			assert.Equal(t, SideNone, r.st.First)
			assert.GreaterOrEqual(t, r.st.Duration, 3*idle, "the busy period did not count as idle")
			assert.GreaterOrEqual(t, time.Since(lastWrite), idle, "ended a full idle period after the last byte")
			// The client sees its connection closed.
			e.client.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := io.ReadAll(e.client)
			assert.False(t, isDeadline(err), "client connection was closed")
			assertIdle(t, h)
		})
	}
}

func TestLifetime(t *testing.T) { testLifetime(t, joinEngine) }

func testLifetime(t *testing.T, eng relayEngine) {
	const life = 400 * time.Millisecond
	e, _ := eng.start(t, trTCP, relayConfig{Lifetime: life, IdleTimeout: time.Hour}, context.Background(), nil)
	go io.Copy(io.Discard, e.server)
	go func() {
		for {
			if _, err := e.client.Write([]byte("busy")); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	r := e.wait(t)
	assert.ErrorIs(t, r.err, ErrLifetime)
	assert.Equal(t, EndLifetime, r.st.End)
	assert.GreaterOrEqual(t, r.st.Duration, life)
	assert.Equal(t, "other", Errno(r.err))
}

func TestCancel(t *testing.T) { testCancel(t, joinEngine) }

// testCancel: canceling ctx ends the join with EndCanceled and closes both
// peers' connections, when the join is idle and when bytes wait in the
// relay (the server does not read).
func testCancel(t *testing.T, eng relayEngine) {
	for _, tr := range transports {
		for _, busy := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/busy=%v", tr, busy), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				e, h := eng.start(t, tr, relayConfig{}, ctx, nil)
				if busy {
					flood(e.client)
					time.Sleep(200 * time.Millisecond)
				}
				cancel()
				r := e.wait(t) // a generous bound: "promptly" on a loaded machine
				assert.ErrorIs(t, r.err, context.Canceled)
				assert.Equal(t, EndCanceled, r.st.End)
				for _, c := range []net.Conn{e.client, e.server} {
					c.SetReadDeadline(time.Now().Add(30 * time.Second))
					_, err := io.Copy(io.Discard, c)
					assert.False(t, isDeadline(err), "peer connection was closed")
				}
				assertIdle(t, h)
			})
		}
	}
}

func TestCanceledBeforeJoin(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a, b := net.Pipe()
	st, err := Join(ctx, a, b)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, EndCanceled, st.End)
	_, err = a.Write([]byte("x"))
	assert.ErrorIs(t, err, io.ErrClosedPipe, "Join closed a")
}

// TestPipes: connections without CloseWrite (net.Pipe) take the buffer
// path; an EOF ends the join cleanly.
func TestPipes(t *testing.T) { testPipes(t, joinEngine) }

func testPipes(t *testing.T, eng relayEngine) {
	a, client := net.Pipe()
	b, server := net.Pipe()
	done := eng.startPipes(t, a, b)
	go func() {
		buf := make([]byte, 5)
		io.ReadFull(server, buf)
		server.Write(buf)
	}()
	helloRoundTrip(t, client)
	client.Close()
	r := <-done
	assert.NoError(t, r.err)
	assert.NoError(t, r.st.Err)
	assert.Equal(t, int64(5), r.st.AToB)
	assert.Equal(t, int64(5), r.st.BToA)
	assert.Equal(t, SideA, r.st.First)
}

func TestErrno(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{io.EOF, ""},
		{&Error{Side: SideA, Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "ECONNRESET"},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, "EPIPE"},
		{syscall.ETIMEDOUT, "ETIMEDOUT"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "ECONNREFUSED"},
		{ErrIdleTimeout, "other"},
		{context.Canceled, "other"},
		{errors.New("connection reset by peer"), "other"}, // no string matching
	} {
		assert.Equal(t, c.want, Errno(c.err), "%v", c.err)
	}
}

func TestStrings(t *testing.T) {
	assert.Equal(t, "a_to_b", AToB.String())
	assert.Equal(t, "b_to_a", BToA.String())
	assert.Equal(t, "a", SideA.String())
	assert.Equal(t, "b", SideB.String())
	assert.Equal(t, "", SideNone.String())
	for e, s := range map[End]string{EndEOF: "eof", EndReset: "reset", EndIdleTimeout: "idle_timeout",
		EndLifetime: "lifetime", EndCanceled: "canceled", EndError: "error"} {
		assert.Equal(t, s, e.String())
	}
	assert.Equal(t, 1<<10, size(1, 0))
	assert.Equal(t, 16<<10, size(0, 16<<10))
	assert.Equal(t, 32<<10, size(20000, 0))
	assert.Equal(t, 1<<20, size(1<<30, 0))
}

// TestObserverLive: the Observer sees spliced bytes while they flow, one
// bounded chunk behind at most, not only when Join returns.
func TestObserverLive(t *testing.T) {
	for _, tr := range []transport{trTCP, trTLS} {
		t.Run(string(tr), func(t *testing.T) {
			var obs counter
			e := newEnv(t, tr, &Joiner{}, context.Background(), &obs)
			const total = 32 << 20
			go func() {
				buf := make([]byte, 1<<20)
				for sent := 0; sent < total; sent += len(buf) {
					if _, err := e.client.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 256<<10)
			got := 0
			for got < total/2 {
				n, err := e.server.Read(buf)
				require.NoError(t, err)
				got += n
			}
			seen := obs.n[AToB].Load() - int64(len(preamble))
			assert.GreaterOrEqual(t, seen, int64(got)-maxChunk, "observer lags by at most one chunk")
			select {
			case <-e.done:
				t.Fatal("Join returned mid-stream")
			default:
			}
			e.client.Close()
			e.server.Close()
			e.wait(t)
		})
	}
}

// TestCancelWhileWriteBlocked: a direction blocked writing to a peer that
// does not read (its source still has bytes) must not keep Join from
// returning when the context is canceled, on every path.
func TestCancelWhileWriteBlocked(t *testing.T) {
	for _, tr := range transports {
		for _, nosplice := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/nosplice=%v", tr, nosplice), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				j := &Joiner{DisableSplice: nosplice, hooks: &hooks{}}
				e := newEnv(t, tr, j, ctx, nil)
				// The server never reads: the relay's write to it blocks
				// once the socket buffers are full.
				flood(e.client)
				// Wait until bytes stopped moving (the relay is blocked).
				waitStuck(t, j.hooks)
				cancel()
				r := e.wait(t)
				assert.ErrorIs(t, r.err, context.Canceled)
				assert.Equal(t, EndCanceled, r.st.End)
				assertIdle(t, j.hooks)
			})
		}
	}
}
