package detect_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
)

// plainConn hides the *net.TCPConn type, so Detect takes the reading
// (replay) path.
type plainConn struct{ net.Conn }

// A client that sends a partial prefix and then resets (SO_LINGER 0 and
// Close sends an RST) ends detection at once with an error wrapping
// ECONNRESET, on the MSG_PEEK path and the reading path alike, instead of
// waiting for the detection timeout. The reset comes before or after
// detection first sees the bytes.
func TestResetDuringDetectionFailsFast(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const timeout = 20 * time.Second
	for _, path := range []string{"peek", "read"} {
		for _, resetFirst := range []bool{false, true} {
			name := path + "/reset-while-waiting"
			if resetFirst {
				name = path + "/reset-before-detect"
			}
			t.Run(name, func(t *testing.T) {
				client, server := tcpPair(t)
				defer server.Close()
				var conn net.Conn = server
				if path == "read" {
					conn = plainConn{server}
				}
				_, err := client.Write([]byte("GE"))
				require.NoError(t, err)
				reset := func() {
					require.NoError(t, client.SetLinger(0))
					require.NoError(t, client.Close())
				}
				var resetAt time.Time
				if resetFirst {
					reset()
					resetAt = time.Now()
				} else {
					go func() {
						time.Sleep(100 * time.Millisecond) // detection is waiting for more
						reset()
					}()
				}
				d := &detect.Detector{Timeout: timeout}
				start := time.Now()
				res, out, err := d.Detect(context.Background(), conn)
				elapsed := time.Since(start)
				require.NotNil(t, out)
				defer out.Close()
				require.Error(t, err, "a reset is a connection failure")
				assert.True(t, errors.Is(err, syscall.ECONNRESET), "errors.Is(%v, ECONNRESET)", err)
				assert.Equal(t, detect.Unknown, res.Protocol)
				assert.Equal(t, detect.ReasonClosed, res.Reason)
				// "Promptly" is anything well short of the 20 s timeout
				// on a loaded machine.
				assert.Less(t, elapsed, timeout/4, "detection must not wait for the timeout after a reset")
				if resetFirst {
					assert.Less(t, time.Since(resetAt), timeout/4)
				}
				if path == "peek" && runtime.GOOS == "linux" {
					assert.Same(t, server, out, "the peek path hands back the conn itself")
				}
			})
		}
	}
}

// Through a Mux, a client that resets during detection ends as
// MuxDetectFailed with an ECONNRESET error at once, not as a timeout.
func TestMuxResetDuringDetectionIsDetectFailed(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var events muxEvents
	m, serve := startMux(t, &detect.Detector{Timeout: 20 * time.Second}, detect.MuxConfig{OnConn: events.add})
	_ = m.Default()
	serveErr := serve()
	c, err := net.DialTimeout("tcp", m.Addr().String(), 10*time.Second)
	require.NoError(t, err)
	_, err = c.Write([]byte("GE"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return m.Stats().InFlight == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, c.(*net.TCPConn).SetLinger(0))
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return m.Stats().DetectFailed == 1 }, 5*time.Second, time.Millisecond,
		"the reset ends detection well before the 20 s timeout")
	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
	events.mu.Lock()
	defer events.mu.Unlock()
	require.Len(t, events.evs, 1)
	assert.Equal(t, detect.MuxDetectFailed, events.evs[0].Outcome)
	assert.True(t, errors.Is(events.evs[0].Err, syscall.ECONNRESET), "event error %v wraps ECONNRESET", events.evs[0].Err)
}
