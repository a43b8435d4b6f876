//go:build linux

package splice

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLoopShutdownDrains: Shutdown stops ServeDial from accepting at once, while a transfer in
// flight goes on to its end — every byte delivered both ways — and only then does Shutdown return;
// Start after it is refused. Both the loop's own accept path and the accept-goroutine path
// (a lingering listener) are checked.
func TestLoopShutdownDrains(t *testing.T) {
	for _, linger := range []bool{false, true} {
		t.Run(map[bool]string{false: "loop-accept", true: "accept-goroutine"}[linger], func(t *testing.T) {
			echo, stop := startEcho(t, func(c net.Conn) net.Conn { return c })
			defer stop()
			l := newLoop(t, &Loop{})
			ln := listen(t).(*net.TCPListener)
			if linger {
				require.NoError(t, setLinger(ln, 5))
			}
			lnAddr := ln.Addr().String()
			dones := make(chan Stats, 4)
			served := make(chan error, 1)
			go func() {
				served <- l.ServeDial(context.Background(), ln, netip.MustParseAddrPort(echo), nil, func(st Stats) { dones <- st })
			}()
			c, err := net.Dial("tcp", lnAddr)
			require.NoError(t, err)
			defer c.Close()
			payload := make([]byte, 4<<20)
			_, _ = rand.Read(payload)
			half := len(payload) / 2
			_, err = c.Write(payload[:half])
			require.NoError(t, err)
			require.Eventually(t, func() bool { return l.Active() == 1 }, 10*time.Second, time.Millisecond)

			shut := make(chan error, 1)
			go func() { shut <- l.Shutdown(context.Background()) }()
			waitServed(t, served, ErrLoopClosed)
			_, err = net.Dial("tcp", lnAddr)
			assert.ErrorIs(t, err, syscall.ECONNREFUSED, "no longer accepting")
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned (%v) with a transfer in flight", err)
			case <-time.After(50 * time.Millisecond):
			}

			// The transfer goes on: the rest, a half-close, and the whole echo back.
			got := make(chan []byte, 1)
			go func() {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				b, _ := io.ReadAll(c)
				got <- b
			}()
			_, err = c.Write(payload[half:])
			require.NoError(t, err)
			require.NoError(t, c.(*net.TCPConn).CloseWrite())
			b := <-got
			assert.Equal(t, len(payload), len(b))
			assert.Equal(t, payload, b, "every byte delivered")
			st := waitDone(t, dones)
			assert.NoError(t, st.Err)
			assert.Equal(t, int64(len(payload)), st.AToB)
			assert.Equal(t, int64(len(payload)), st.BToA)
			select {
			case err := <-shut:
				assert.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Fatal("Shutdown did not return after the last join ended")
			}
			assert.Zero(t, l.Active())
			a1, a2 := net.Pipe()
			defer a1.Close()
			defer a2.Close()
			assert.ErrorIs(t, l.Start(context.Background(), a1, a2, nil, nil), ErrLoopClosed)
		})
	}
}

// TestLoopShutdownDeadline: a join that never ends is ended when Shutdown's context does.
func TestLoopShutdownDeadline(t *testing.T) {
	l := newLoop(t, &Loop{})
	client, a := dialPair(t)
	defer client.Close()
	server, b := dialPair(t)
	defer server.Close()
	dones := make(chan Stats, 1)
	require.NoError(t, l.Start(context.Background(), a, b, nil, func(st Stats) { dones <- st }))
	require.Eventually(t, func() bool { return l.Active() == 1 }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, l.Shutdown(ctx), context.DeadlineExceeded)
	st := waitDone(t, dones)
	assert.ErrorIs(t, st.Err, ErrLoopClosed)
	assert.Zero(t, l.Active())
}
