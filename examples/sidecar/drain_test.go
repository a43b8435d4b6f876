package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/examples/internal/exampletest"
	"github.com/sniffsplice/sniff/examples/sidecar/internal/testserver"
	"github.com/sniffsplice/sniff/examples/sidecar/proxy"
)

// digestServer reads until EOF and answers the SHA-256 of what it read.
func digestServer(t testing.TB) netip.AddrPort {
	t.Helper()
	return testserver.Serve(t, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			return
		}
		c.Write(h.Sum(nil))
	})
}

// startDraining runs the client-side sidecar's code like main does, in front of srv's inbound
// listener; cancelling the returned context is what SIGTERM does.
func startDraining(t *testing.T, dst netip.AddrPort, srv *proxy.Sidecar, cf []string, extra ...string) (addr string, sigterm context.CancelFunc, exited <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *proxy.Sidecar, 1)
	done := make(chan error, 1)
	finished := make(chan struct{})
	var out exampletest.Buffer
	args := append(append(cf, "-forward", "127.0.0.1:0="+dst.String(), "-peer", srv.InboundAddr.String(),
		"-peer-id", serverID, "-opaque-ports", strconv.Itoa(int(dst.Port()))), extra...)
	go func() {
		defer close(finished)
		done <- run(ctx, args, &out, &out, func(s *proxy.Sidecar) { started <- s })
	}()
	select {
	case s := <-started:
		t.Cleanup(func() {
			cancel()
			select {
			case <-finished:
			case <-time.After(30 * time.Second):
				t.Error("sidecar did not stop")
			}
		})
		return s.ForwardAddrs[0].String(), cancel, done
	case err := <-done:
		t.Fatalf("sidecar did not start: %v\n%s", err, out.String())
	}
	return "", nil, nil
}

// TestDrainOnSIGTERM: SIGTERM stops the sidecar from accepting at once, while a transfer in flight
// goes on to its end — every byte delivered, the answer back — and only then does the sidecar exit,
// with status 0.
func TestDrainOnSIGTERM(t *testing.T) {
	dst := digestServer(t)
	cf, sf := identities(t)
	srv, _ := startSidecar(t, append(sf, "-inbound", "127.0.0.1:0", "-allow", clientID)...)
	addr, sigterm, exited := startDraining(t, dst, srv, cf, "-drain-grace", "20s")

	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	payload := make([]byte, 4<<20)
	_, _ = rand.Read(payload)
	half := len(payload) / 2
	_, err = c.Write(payload[:half])
	require.NoError(t, err)

	sigterm()
	require.Eventually(t, func() bool {
		d, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			d.Close()
		}
		return err != nil
	}, 10*time.Second, 5*time.Millisecond, "the listener stops accepting")
	select {
	case err := <-exited:
		t.Fatalf("the sidecar exited (%v) with a transfer in flight", err)
	case <-time.After(100 * time.Millisecond):
	}

	_, err = c.Write(payload[half:])
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	sum, err := io.ReadAll(c)
	require.NoError(t, err)
	want := sha256.Sum256(payload)
	assert.Equal(t, want[:], sum, "every byte delivered, the answer back")
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit status 0")
	case <-time.After(30 * time.Second):
		t.Fatal("the sidecar did not exit once its last connection ended")
	}
}

// TestDrainGraceEnds: a connection that does not end within -drain-grace is closed, and the
// sidecar exits.
func TestDrainGraceEnds(t *testing.T) {
	dst := digestServer(t)
	cf, sf := identities(t)
	srv, _ := startSidecar(t, append(sf, "-inbound", "127.0.0.1:0", "-allow", clientID)...)
	addr, sigterm, exited := startDraining(t, dst, srv, cf, "-drain-grace", "300ms")
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("never finished"))
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond) // the connection is joined
	start := time.Now()
	sigterm()
	select {
	case err := <-exited:
		assert.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the sidecar did not exit after its drain grace")
	}
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "the grace was given")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadAll(c)
	assert.False(t, isTimeout(err), "the client's connection was closed")
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
