package detect_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
)

// TestWithTimeout: the call's timeout replaces the Detector's, 0 keeps the Detector's, and a
// negative one means none (only ctx ends the call). Which timeout ended a call shows in its outcome
// (a timeout Result, or the context's error), not in how long it took. The Detector's hook sees
// every call.
func TestWithTimeout(t *testing.T) {
	defer goleak.VerifyNone(t)
	silent := func() net.Conn {
		c, s := tcpPair(t)
		t.Cleanup(func() { c.Close(); s.Close() })
		return s
	}
	withDeadline := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}

	calls := 0
	long := &detect.Detector{Timeout: time.Hour, OnResult: func(*detect.Result) { calls++ }}
	// 20 ms instead of an hour: only the call's timeout can end it with a timeout Result.
	res, c, err := long.Detect(context.Background(), silent(), detect.WithTimeout(20*time.Millisecond))
	require.NoError(t, err)
	require.NotNil(t, c)
	assert.Equal(t, detect.ReasonTimeout, res.Reason)
	assert.Equal(t, detect.Unknown, res.Protocol)
	// 0 keeps the Detector's hour: the context's 300 ms end the call.
	_, _, err = long.Detect(withDeadline(), silent(), detect.WithTimeout(0))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 2, calls, "the Detector's hook sees every call")

	short := &detect.Detector{Timeout: 30 * time.Millisecond}
	// 0 keeps the Detector's 30 ms.
	res, _, err = short.Detect(withDeadline(), silent(), detect.WithTimeout(0))
	require.NoError(t, err)
	assert.Equal(t, detect.ReasonTimeout, res.Reason)
	// A negative timeout is none: the Detector's 30 ms do not fire, the context ends the call.
	_, _, err = short.Detect(withDeadline(), silent(), detect.WithTimeout(-1))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	// The last option given wins.
	res, _, err = short.Detect(withDeadline(), silent(), detect.WithTimeout(-1), detect.WithTimeout(10*time.Millisecond))
	require.NoError(t, err)
	assert.Equal(t, detect.ReasonTimeout, res.Reason)
}

// TestWithTimeoutMatches: a per-call timeout does not change what is detected when bytes come.
func TestWithTimeoutMatches(t *testing.T) {
	c, s := tcpPair(t)
	defer c.Close()
	defer s.Close()
	_, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	require.NoError(t, err)
	var d detect.Detector
	res, _, err := d.Detect(context.Background(), s, detect.WithTimeout(5*time.Second))
	require.NoError(t, err)
	assert.Equal(t, detect.HTTP1, res.Protocol)
	assert.Equal(t, "a", res.HTTP.Host())
}

// TestWithTimeoutNoAlloc: on the MSG_PEEK path, Detect with a per-call option allocates nothing,
// like Detect without one.
func TestWithTimeoutNoAlloc(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the MSG_PEEK path is Linux only")
	}
	if underRace {
		t.Skip("allocation counts mean nothing under the race detector (sync.Pool drops items)")
	}
	c, s := tcpPair(t)
	defer c.Close()
	defer s.Close()
	_, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	require.NoError(t, err)
	var d detect.Detector
	ctx := context.Background()
	require.Eventually(t, func() bool {
		res, _, _ := d.Detect(ctx, s, detect.WithTimeout(time.Second))
		return res.Protocol == detect.HTTP1
	}, 10*time.Second, time.Millisecond)
	allocs := testing.AllocsPerRun(100, func() {
		if res, _, err := d.Detect(ctx, s, detect.WithTimeout(time.Second)); err != nil || res.Protocol != detect.HTTP1 {
			t.Fatal(res.Protocol, err)
		}
	})
	assert.Zero(t, allocs)
}

// TestMuxMatchGRPCOff: naming GRPC on a Mux whose Detector cannot detect it gives a listener whose
// Accept fails at once with an error saying so, so the server given it stops instead of never
// receiving a connection; with a GRPC mode on, the same Match serves.
func TestMuxMatchGRPCOff(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, d := range []*detect.Detector{nil, {}, {GRPC: detect.GRPCOff}} {
		m, _ := startMux(t, d, detect.MuxConfig{})
		l := m.Match(detect.GRPC, detect.HTTP2)
		_, err := l.Accept()
		require.ErrorIs(t, err, detect.ErrGRPCOff)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, m.Addr(), l.Addr())
		assert.Contains(t, err.Error(), "GRPCActive")

		// A server handed the listener returns the error instead of waiting forever.
		srv := &http.Server{}
		assert.ErrorIs(t, srv.Serve(l), detect.ErrGRPCOff)
		require.NoError(t, m.Close())
	}

	m, serve := startMux(t, &detect.Detector{GRPC: detect.GRPCPassive}, detect.MuxConfig{})
	l := m.Match(detect.GRPC)
	done := serve()
	require.NoError(t, m.Close())
	_, err := l.Accept()
	assert.False(t, errors.Is(err, detect.ErrGRPCOff), "a working child: it fails only because the mux closed")
	assert.ErrorIs(t, err, net.ErrClosed)
	recv(t, done, "Serve to return")
}

// BenchmarkDetectOption: Detect on a loopback conn holding an HTTP/1 request, without an option and
// with a per-call WithTimeout, side by side (the option must cost nothing measurable and allocate
// nothing).
func BenchmarkDetectOption(b *testing.B) {
	c, s := tcpPair(b)
	defer c.Close()
	defer s.Close()
	if _, err := c.Write([]byte("GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: api.example.com\r\n\r\n")); err != nil {
		b.Fatal(err)
	}
	var d detect.Detector
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if res, _, _ := d.Detect(ctx, s); res.Protocol == detect.HTTP1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the request did not arrive")
		}
	}
	for _, bc := range []struct {
		name string
		opts []detect.Option
	}{{"none", nil}, {"WithTimeout", []detect.Option{detect.WithTimeout(5 * time.Second)}}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if res, _, err := d.Detect(ctx, s, bc.opts...); err != nil || res.Protocol != detect.HTTP1 {
					b.Fatal(res.Protocol, err)
				}
			}
		})
	}
}
