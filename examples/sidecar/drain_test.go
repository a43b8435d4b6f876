package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
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
	requireStopsAccepting(t, addr)
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

// TestDrainHTTPKeepAlive: on SIGTERM, as net/http's Shutdown does, an HTTP/1.1 keep-alive
// connection with a request in flight gets its answer with Connection: close and is then closed,
// an idle keep-alive connection is closed, and the sidecar exits as soon as they are, long before
// its drain grace.
func TestDrainHTTPKeepAlive(t *testing.T) {
	dst, inFlight, unblock := slowBackend(t, nil, func(*http.Request) string { return "ok" })
	cf, sf := identities(t)
	srv, _ := startSidecar(t, append(sf, "-inbound", "127.0.0.1:0", "-allow", clientID, "-opaque-ports", "1")...)
	// The port is not opaque (only port 1 is): its HTTP goes through both sidecars' HTTP layer.
	addr, sigterm, exited := startDraining(t, dst, srv, cf, "-opaque-ports", "1", "-drain-grace", "20s")

	type client struct {
		c net.Conn
		r *bufio.Reader
	}
	dial := func() client {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
		return client{c, bufio.NewReader(c)}
	}
	send := func(cl client, path string) {
		_, err := io.WriteString(cl.c, "GET "+path+" HTTP/1.1\r\nHost: backend\r\n\r\n")
		require.NoError(t, err)
	}
	answer := func(cl client) *http.Response {
		resp, err := http.ReadResponse(cl.r, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, "ok", string(body))
		return resp
	}
	busy, idle := dial(), dial()
	for _, cl := range []client{busy, idle} {
		send(cl, "/")
		require.False(t, answer(cl).Close, "kept alive before the drain")
	}
	send(busy, "/slow")
	requireArrives(t, inFlight, "the slow request reached the backend")

	start := time.Now()
	sigterm()
	requireStopsAccepting(t, addr)

	// The idle connection is closed without an answer (it asked nothing).
	rest, err := io.ReadAll(idle.r)
	require.NoError(t, err, "closed, not timed out")
	assert.Empty(t, rest)
	select {
	case err := <-exited:
		t.Fatalf("the sidecar exited (%v) with a request in flight", err)
	default:
	}

	unblock()
	resp := answer(busy)
	assert.True(t, resp.Close, "the answer in flight says Connection: close")
	rest, err = io.ReadAll(busy.r)
	require.NoError(t, err, "then the connection is closed")
	assert.Empty(t, rest)
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit status 0")
	case <-time.After(10 * time.Second):
		t.Fatal("the sidecar did not exit once its connections ended")
	}
	assert.Less(t, time.Since(start), 15*time.Second, "well within the 20 s grace")
}

// TestDrainH2C: on SIGTERM an h2c connection (carried by net/http) gets a GOAWAY: its stream in
// flight is answered, then the connection is closed and the sidecar exits, long before its drain
// grace, though the client would have kept the connection open.
func TestDrainH2C(t *testing.T) {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	dst, inFlight, unblock := slowBackend(t, &protos, func(r *http.Request) string { return r.Proto })
	cf, sf := identities(t)
	srv, _ := startSidecar(t, append(sf, "-inbound", "127.0.0.1:0", "-allow", clientID, "-opaque-ports", "1")...)
	addr, sigterm, exited := startDraining(t, dst, srv, cf, "-opaque-ports", "1", "-drain-grace", "20s")

	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &cp}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + addr + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "HTTP/2.0", resp.Proto)
	require.Equal(t, "HTTP/2.0", string(body), "h2c end to end")

	type result struct {
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := client.Get("http://" + addr + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{string(b), err}
	}()
	requireArrives(t, inFlight, "the slow request reached the backend")
	start := time.Now()
	sigterm()
	requireStopsAccepting(t, addr)
	unblock()
	select {
	case r := <-slow:
		require.NoError(t, r.err)
		assert.Equal(t, "HTTP/2.0", r.body, "the stream in flight is answered")
	case <-time.After(10 * time.Second):
		t.Fatal("the stream in flight was not answered")
	}
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit status 0")
	case <-time.After(10 * time.Second):
		t.Fatal("the sidecar did not exit: the h2c connection was not shut down")
	}
	assert.Less(t, time.Since(start), 15*time.Second, "well within the 20 s grace")
}

// slowBackend serves HTTP (with protos, nil for HTTP/1.1 only) and answers each request with
// answer(r); a request for /slow is announced on inFlight and held until unblock is called (or
// 30 s pass).
func slowBackend(t *testing.T, protos *http.Protocols, answer func(*http.Request) string) (dst netip.AddrPort, inFlight <-chan struct{}, unblock func()) {
	release := make(chan struct{})
	var once sync.Once
	unblock = func() { once.Do(func() { close(release) }) }
	arrived := make(chan struct{}, 1)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-time.After(30 * time.Second):
			}
		}
		io.WriteString(w, answer(r))
	}))
	backend.Config.Protocols = protos
	backend.Start()
	t.Cleanup(backend.Close)
	t.Cleanup(unblock)
	return netip.MustParseAddrPort(backend.Listener.Addr().String()), arrived, unblock
}

// requireStopsAccepting waits until nothing accepts on addr any more.
func requireStopsAccepting(t *testing.T, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		d, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			d.Close()
		}
		return err != nil
	}, 10*time.Second, 5*time.Millisecond, "the listener stops accepting")
}

// requireArrives waits (10 s at most) for one value on c.
func requireArrives(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting: %s", what)
	}
}
