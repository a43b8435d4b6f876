package detect_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
)

// Timeout: the result is Unknown/timeout, err is nil, the connection is
// open, keeps every byte and has no deadline left on it.
func TestDetectTimeoutKeepsConnUsable(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			client, server := tr.pair(t)
			defer client.Close()
			go func() { _, _ = client.Write([]byte("GE")) }()
			d := &detect.Detector{Timeout: 200 * time.Millisecond}
			res, conn, err := d.Detect(context.Background(), server)
			require.NoError(t, err)
			defer conn.Close()
			assert.Equal(t, detect.Unknown, res.Protocol)
			assert.Equal(t, detect.ReasonTimeout, res.Reason)
			assert.GreaterOrEqual(t, res.Duration, 200*time.Millisecond)
			if tr.name == "tcp" && runtime.GOOS == "linux" {
				assert.Same(t, server, conn)
			}
			sent := make(chan error, 1)
			go func() {
				time.Sleep(400 * time.Millisecond) // past the detection deadline
				if _, err := client.Write([]byte("T / HTTP/1.1\r\n\r\n")); err != nil {
					sent <- err
					return
				}
				sent <- tr.closeWrite(client)
			}()
			got, err := io.ReadAll(bounded(conn))
			require.NoError(t, err, "the detection deadline must be cleared")
			require.NoError(t, recv(t, sent, "sent"))
			assert.Equal(t, "GET / HTTP/1.1\r\n\r\n", string(got))
		})
	}
}

func TestDetectContextCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			client, server := tr.pair(t)
			defer client.Close()
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			var calls atomic.Int32
			d := &detect.Detector{Timeout: time.Minute, OnResult: func(*detect.Result) { calls.Add(1) }}
			res, conn, err := d.Detect(ctx, server)
			require.ErrorIs(t, err, context.Canceled)
			require.NotNil(t, conn)
			defer conn.Close()
			assert.Equal(t, detect.Unknown, res.Protocol)
			assert.Less(t, res.Duration, 30*time.Second)
			assert.Equal(t, int32(1), calls.Load())
			// The conn is still usable: the cancellation deadline is gone.
			go func() { _, _ = client.Write([]byte("late")) }()
			buf := make([]byte, 4)
			_, err = io.ReadFull(bounded(conn), buf)
			require.NoError(t, err)
			assert.Equal(t, "late", string(buf))
		})
	}
}

func TestDetectContextDeadlineAndAlreadyDone(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	client, server := tcpPair(t)
	defer client.Close()
	defer server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := (&detect.Detector{}).Detect(ctx, server)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	res, conn, err := (&detect.Detector{}).Detect(done, server)
	require.ErrorIs(t, err, context.Canceled)
	assert.Same(t, server, conn)
	assert.Equal(t, 0, res.Bytes)
}

// detectSent runs d.Detect on the server end of a fresh tr pair while the
// client writes in (then half-closes its side, when fin). The client and the
// returned connection are closed when the test ends.
func detectSent(t *testing.T, tr transport, d *detect.Detector, in string, fin bool) (detect.Result, net.Conn) {
	t.Helper()
	client, server := tr.pair(t)
	t.Cleanup(func() { client.Close() })
	go func() {
		_, _ = client.Write([]byte(in))
		if fin {
			_ = tr.closeWrite(client)
		}
	}()
	res, conn, err := d.Detect(context.Background(), server)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return res, conn
}

// A FIN behind partial bytes ends detection at once with ReasonClosed
// instead of waiting for the timeout (MSG_PEEK cannot see the FIN itself).
func TestDetectPeerClosedBehindPartialBytes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			res, conn := detectSent(t, tr, &detect.Detector{Timeout: time.Minute}, "GET / HT", true)
			assert.Equal(t, detect.ReasonClosed, res.Reason)
			assert.Equal(t, detect.Unknown, res.Protocol)
			assert.Less(t, res.Duration, 30*time.Second)
			got, err := io.ReadAll(bounded(conn))
			require.NoError(t, err)
			assert.Equal(t, "GET / HT", string(got))
		})
	}
}

// A first byte no matcher can accept decides at once, while the client
// keeps the connection open and silent.
func TestDetectFirstByteDecidesAtOnce(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			res, _ := detectSent(t, tr, &detect.Detector{Timeout: time.Minute}, "X", false)
			assert.Equal(t, detect.ReasonNoMatch, res.Reason)
			assert.Equal(t, 1, res.Bytes)
			assert.Less(t, res.Duration, 30*time.Second)
		})
	}
}

func TestDetectLimit(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	in := append([]byte("GET /"), bytes.Repeat([]byte("a"), 200)...)
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			res, conn := detectSent(t, tr, &detect.Detector{MaxPeek: 64}, string(in), true)
			assert.Equal(t, detect.ReasonLimit, res.Reason)
			assert.Equal(t, 64, res.Bytes)
			got, err := io.ReadAll(bounded(conn))
			require.NoError(t, err)
			assert.Equal(t, in, got)
		})
	}
}

// Matchers earlier in the list win, even when a later one decides first.
func TestDetectMatcherOrder(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	slow := detect.NewMatcher("four", func(b []byte, _ *detect.Result) detect.Verdict {
		if len(b) < 4 {
			return detect.NeedMore
		}
		return detect.Match
	})
	fast := detect.NewMatcher("one", func(b []byte, _ *detect.Result) detect.Verdict { return detect.Match })
	c, s := net.Pipe()
	defer c.Close()
	go func() {
		for _, b := range []string{"a", "b", "c", "d"} {
			_, _ = c.Write([]byte(b))
		}
	}()
	var got []detect.Result
	d := &detect.Detector{Matchers: []detect.Matcher{slow, fast}, OnResult: func(r *detect.Result) { got = append(got, *r) }}
	res, conn, err := d.Detect(context.Background(), s)
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, detect.Protocol("four"), res.Protocol)
	require.Len(t, got, 1, "OnResult is called once")
	assert.Equal(t, res, got[0])

	// An empty (non-nil) list decides Unknown without reading.
	res, conn2, err := (&detect.Detector{Matchers: []detect.Matcher{}}).Detect(context.Background(), conn)
	require.NoError(t, err)
	assert.Equal(t, detect.ReasonNoMatch, res.Reason)
	assert.Equal(t, 0, res.Bytes)
	assert.Same(t, conn, conn2)
}

// io.Copy from a detected loopback *net.TCPConn to another *net.TCPConn:
// Detect returns the very *net.TCPConn (no wrapper), so the copy is a
// TCP-to-TCP copy that the runtime splices.
func TestDetectedTCPConnKeepsTypeForSplice(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("MSG_PEEK path is Linux-only")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	client, server := tcpPair(t)
	defer client.Close()
	upIn, upOut := tcpPair(t)
	defer upIn.Close()
	defer upOut.Close()
	payload := append([]byte("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 65536\r\n\r\n"), bytes.Repeat([]byte{7}, 65536)...)
	go func() {
		_, _ = client.Write(payload)
		_ = client.CloseWrite()
	}()
	res, conn, err := (&detect.Detector{}).Detect(context.Background(), server)
	require.NoError(t, err)
	require.Equal(t, detect.HTTP1, res.Protocol)
	tc, ok := conn.(*net.TCPConn)
	require.True(t, ok, "Detect must return *net.TCPConn, got %T", conn)
	require.Same(t, server, tc)
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(upOut, tc) // *net.TCPConn -> *net.TCPConn
		if err == nil {
			err = upOut.CloseWrite()
		}
		copied <- err
	}()
	got, err := io.ReadAll(upIn)
	require.NoError(t, err)
	require.NoError(t, recv(t, copied, "copied"))
	assert.Equal(t, payload, got)
	tc.Close()
}

func TestDetectZeroValueDefaults(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var d detect.Detector
	c, s := net.Pipe()
	defer c.Close()
	go func() { _, _ = c.Write([]byte("OPTIONS * HTTP/1.1\r\nHost: zero.example\r\n\r\n")) }()
	res, conn, err := d.Detect(context.Background(), s)
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, detect.HTTP1, res.Protocol)
	assert.Equal(t, "OPTIONS", res.HTTP.Method)
	assert.Equal(t, "zero.example", res.HTTP.Host())
	rc, ok := conn.(*detect.ReplayConn)
	require.True(t, ok)
	assert.Same(t, s, rc.NetConn())
	assert.Equal(t, res.Bytes, rc.Buffered())
}

// A failing read is returned as an error with a usable conn.
func TestDetectReadError(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, s := net.Pipe()
	s.Close() // reading a locally closed pipe fails with io.ErrClosedPipe
	defer c.Close()
	res, conn, err := (&detect.Detector{}).Detect(context.Background(), s)
	require.ErrorIs(t, err, io.ErrClosedPipe)
	require.NotNil(t, conn)
	assert.Same(t, s, conn, "nothing was read: the conn itself comes back")
	assert.Equal(t, detect.Unknown, res.Protocol)
	assert.Equal(t, detect.ReasonClosed, res.Reason)
	assert.Zero(t, res.Bytes)
}

func TestReplayConn(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t.Run("read-then-inner", func(t *testing.T) {
		c, s := net.Pipe()
		defer c.Close()
		rc := detect.NewReplayConn(s, []byte("hello "))
		defer rc.Close()
		go func() { _, _ = c.Write([]byte("world")); c.Close() }()
		b := make([]byte, 3)
		n, err := rc.Read(b)
		require.NoError(t, err)
		assert.Equal(t, "hel", string(b[:n]))
		assert.Equal(t, 3, rc.Buffered())
		rest, err := io.ReadAll(rc)
		require.NoError(t, err)
		assert.Equal(t, "lo world", string(rest))
		assert.Equal(t, 0, rc.Buffered())
	})
	t.Run("writeto-and-readfrom-hand-off-over-tcp", func(t *testing.T) {
		client, server := tcpPair(t)
		defer client.Close()
		upIn, upOut := tcpPair(t)
		defer upIn.Close()
		rc := detect.NewReplayConn(server, []byte("peeked|"))
		defer rc.Close()
		go func() {
			_, _ = client.Write(bytes.Repeat([]byte("x"), 100000))
			_ = client.CloseWrite()
		}()
		copied := make(chan error, 1)
		go func() {
			n, err := io.Copy(upOut, rc) // uses rc.WriteTo
			if err == nil && n != 100007 {
				err = errors.New("short copy")
			}
			if err == nil {
				err = upOut.CloseWrite()
			}
			copied <- err
		}()
		got, err := io.ReadAll(upIn)
		require.NoError(t, err)
		require.NoError(t, recv(t, copied, "copied"))
		assert.Equal(t, "peeked|"+string(bytes.Repeat([]byte("x"), 100000)), string(got))

		// ReadFrom writes through to the inner conn; CloseWrite passes through.
		n, err := rc.ReadFrom(bytes.NewReader([]byte("reply")))
		require.NoError(t, err)
		assert.Equal(t, int64(5), n)
		require.NoError(t, rc.CloseWrite())
		back, err := io.ReadAll(client)
		require.NoError(t, err)
		assert.Equal(t, "reply", string(back))
	})
	t.Run("closewrite-unsupported", func(t *testing.T) {
		c, s := net.Pipe()
		defer c.Close()
		rc := detect.NewReplayConn(s, nil)
		defer rc.Close()
		require.ErrorIs(t, rc.CloseWrite(), errors.ErrUnsupported)
		require.ErrorIs(t, rc.CloseRead(), errors.ErrUnsupported)
		assert.Equal(t, s.LocalAddr(), rc.LocalAddr())
		assert.Equal(t, s.RemoteAddr(), rc.RemoteAddr())
		require.NoError(t, rc.SetDeadline(time.Now().Add(time.Second)))
		require.NoError(t, rc.SetWriteDeadline(time.Time{}))
	})
}

// Silent connections hold no peek buffer while they wait: 200 concurrent
// detections on silent connections must not keep 200 buffers of 16 KiB.
func TestDetectSilenceHoldsNoBuffer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const n = 200
	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			clients := make([]net.Conn, 0, n)
			servers := make([]net.Conn, 0, n)
			for range n {
				c, s := tr.pair(t)
				clients = append(clients, c)
				servers = append(servers, s)
			}
			defer func() {
				for i := range clients {
					clients[i].Close()
					servers[i].Close()
				}
			}()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, n)
			d := &detect.Detector{Timeout: time.Minute}
			for _, s := range servers {
				go func() {
					_, _, err := d.Detect(ctx, s)
					done <- err
				}()
			}
			time.Sleep(500 * time.Millisecond) // let them block
			runtime.GC()
			runtime.ReadMemStats(&after)
			cancel()
			for range n {
				require.ErrorIs(t, recv(t, done, "done"), context.Canceled)
			}
			grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("heap grew %d bytes for %d silent detections (%d each)", grown, n, grown/n)
			assert.Less(t, grown, int64(n*detect.DefaultMaxPeek/2), "silent detections must not hold peek buffers")
		})
	}
}

// A 20 KiB ClientHello (padding extension) spans two records: the default
// 16 KiB peek limit ends with ReasonLimit, a 64 KiB MaxPeek matches it.
func TestDetectBigClientHelloAndMaxPeek(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	hello := refragment(minimalHello(append(sniExt("big.example"), ext(21, make([]byte, 20000))...)), 16000)
	for _, tr := range transports() {
		for _, maxPeek := range []int{0, 64 << 10} {
			t.Run(fmt.Sprintf("%s/maxpeek=%d", tr.name, maxPeek), func(t *testing.T) {
				client, server := tr.pair(t)
				defer client.Close()
				go func() {
					_, _ = client.Write(hello)
					_ = tr.closeWrite(client)
				}()
				res, conn, err := (&detect.Detector{MaxPeek: maxPeek}).Detect(context.Background(), server)
				require.NoError(t, err)
				defer conn.Close()
				if maxPeek == 0 {
					assert.Equal(t, detect.ReasonLimit, res.Reason)
					assert.Equal(t, detect.DefaultMaxPeek, res.Bytes)
				} else {
					assert.Equal(t, detect.TLS, res.Protocol)
					assert.Equal(t, "big.example", res.TLS.ServerName())
				}
				got, err := io.ReadAll(bounded(conn))
				require.NoError(t, err)
				assert.True(t, bytes.Equal(hello, got))
			})
		}
	}
}
