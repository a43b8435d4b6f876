package detect_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/net/http2"

	"github.com/sniffsplice/sniff/detect"
)

// lockedBuffer is a goroutine-safe bytes.Buffer for server error logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// muxEvents collects the mux's OnConn events.
type muxEvents struct {
	mu  sync.Mutex
	evs []detect.MuxEvent
}

func (e *muxEvents) add(ev detect.MuxEvent) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *muxEvents) count(o detect.MuxOutcome, p detect.Protocol) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if ev.Outcome == o && (p == "" || ev.Result.Protocol == p) {
			n++
		}
	}
	return n
}

// startMux listens on loopback and returns the mux (not yet serving) and a function that runs Serve
// on a goroutine and returns a channel with Serve's error.
func startMux(t *testing.T, d *detect.Detector, cfg detect.MuxConfig) (*detect.Mux, func() <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m := detect.NewMux(ln, d, cfg)
	serve := func() <-chan error {
		ch := make(chan error, 1)
		go func() { ch <- m.Serve() }()
		return ch
	}
	return m, serve
}

// acceptErr calls l.Accept, which must fail (the listener is closed), and
// returns its error; it fails the test instead of hanging when Accept
// blocks.
func acceptErr(t *testing.T, l net.Listener) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if c != nil {
			c.Close()
		}
		ch <- err
	}()
	return recv(t, ch, "Accept on a closed listener to fail")
}

// echoServe echoes every connection accepted from l until Accept fails,
// then closes the connections still open, as a server's Close does, so a
// wait for wg cannot hang on a client that never closes.
func echoServe(l net.Listener, wg *sync.WaitGroup) {
	defer wg.Done()
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range open {
			c.Close()
		}
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		open[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(open, c)
				mu.Unlock()
				c.Close()
			}()
			_, _ = io.Copy(c, c)
		}()
	}
}

func selfSignedTLS(t *testing.T, name string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// TestMuxRealPeers serves net/http (HTTP/1.1 and h2c), gRPC-shaped h2c, TLS and raw TCP on one
// loopback port through one Mux whose Detector tells gRPC from other HTTP/2 actively, and talks to
// it with the real clients: net/http, x/net/http2 h2c, crypto/tls, curl, and a raw TCP echo.
// (grpc-go itself goes through the Mux in the interop module's tests.)
func TestMuxRealPeers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	var events muxEvents
	d := &detect.Detector{GRPC: detect.GRPCActive}
	m, serve := startMux(t, d, detect.MuxConfig{OnConn: events.add})
	httpL := m.Match(detect.HTTP1, detect.HTTP2)
	grpcL := m.Match(detect.GRPC)
	tlsL := m.Match(detect.TLS)
	rawL := m.Default()
	for _, l := range []net.Listener{httpL, grpcL, tlsL, rawL} {
		assert.Equal(t, m.Addr(), l.Addr(), "child Addr is the parent's")
	}
	addr := m.Addr().String()

	// net/http with HTTP/1 and unencrypted HTTP/2 (h2c prior knowledge).
	var httpLog lockedBuffer
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{
		Protocols: &protos,
		ErrorLog:  log.New(&httpLog, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %d", r.Proto, r.URL.Path, len(body))
		}),
	}
	// TLS: an HTTPS server behind the TLS child.
	tlsConf, pool := selfSignedTLS(t, "sniff.test")
	tlsConf.NextProtos = []string{"http/1.1"}
	tlsHS := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s %s", r.TLS.ServerName, r.Proto)
	})}

	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); _ = hs.Serve(httpL) }()
	go func() { defer wg.Done(); _ = h2GRPCServe(grpcL) }()
	go func() { defer wg.Done(); _ = tlsHS.Serve(tls.NewListener(tlsL, tlsConf)) }()
	go echoServe(rawL, &wg)
	serveErr := serve()

	h2c := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, network, a)
		},
	}
	defer h2c.CloseIdleConnections()
	h2cGet := func(t *testing.T) {
		t.Helper()
		c := &http.Client{Transport: h2c, Timeout: 10 * time.Second}
		for i := range 3 {
			resp, err := c.Post("http://"+addr+"/h2c", "text/plain", strings.NewReader(strings.Repeat("x", 1000*i)))
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("HTTP/2.0 /h2c %d", 1000*i), string(b))
		}
	}

	t.Run("net/http HTTP/1.1", func(t *testing.T) {
		assert.Equal(t, "HTTP/1.1 /one 0", httpGet(t, &http.Transport{}, "http://"+addr+"/one"))
	})
	t.Run("h2c client", h2cGet)
	t.Run("gRPC request on h2c", func(t *testing.T) {
		grpcCall(t, addr)
	})
	t.Run("h2c client after gRPC on the same port", func(t *testing.T) {
		h2c.CloseIdleConnections() // a new connection, detected again in active gRPC mode
		h2cGet(t)
	})
	t.Run("crypto/tls client with SNI", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "sniff.test"}}
		assert.Equal(t, "tls sniff.test HTTP/1.1", httpGet(t, tr, "https://"+addr+"/"))
	})
	t.Run("curl HTTP/1.1", func(t *testing.T) {
		curl := needProgram(t, "curl", "curl")
		out, err := exec.Command(curl, "-sS", "--max-time", "10", "--http1.1", "http://"+addr+"/curl1").CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Equal(t, "HTTP/1.1 /curl1 0", string(out))
	})
	t.Run("curl --http2-prior-knowledge", func(t *testing.T) {
		curl := needProgram(t, "curl", "curl")
		out, err := exec.Command(curl, "-sS", "--max-time", "10", "--http2-prior-knowledge", "http://"+addr+"/curl2").CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Equal(t, "HTTP/2.0 /curl2 0", string(out))
	})
	t.Run("raw TCP echo on Default", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		msg := []byte("hello raw tcp\x00\x01\x02")
		_, err = c.Write(msg)
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(c, got)
		require.NoError(t, err)
		assert.Equal(t, msg, got)
	})

	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
	require.NoError(t, hs.Close())
	require.NoError(t, tlsHS.Close())
	waitGroup(t, &wg, "the servers' goroutines")

	assert.Empty(t, httpLog.String(), "net/http server logged errors (a stray SETTINGS ACK would show here)")
	st := m.Stats()
	assert.Zero(t, st.Unrouted)
	assert.Zero(t, st.DetectFailed)
	assert.Zero(t, st.InFlight)
	assert.Equal(t, st.Accepted, st.Routed+st.Shutdown)
	assert.GreaterOrEqual(t, events.count(detect.MuxRouted, detect.GRPC), 1, "gRPC detected and routed")
	assert.GreaterOrEqual(t, events.count(detect.MuxRouted, detect.HTTP2), 2, "h2c detected as HTTP/2 (not gRPC)")
	assert.GreaterOrEqual(t, events.count(detect.MuxRouted, detect.HTTP1), 1)
	assert.GreaterOrEqual(t, events.count(detect.MuxRouted, detect.TLS), 1)
	assert.GreaterOrEqual(t, events.count(detect.MuxRouted, detect.Unknown), 1)
}

// h2GRPCServe serves gRPC-shaped requests (h2c, application/grpc) from l
// with net/http until l is closed: every call answers an empty message and
// grpc-status 0 in the trailers. (grpc-go itself is driven through the Mux
// in the interop module.)
func h2GRPCServe(l net.Listener) error {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/grpc" {
			http.Error(w, "not gRPC", http.StatusUnsupportedMediaType)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write([]byte{0, 0, 0, 0, 0})
		w.Header().Set("Grpc-Status", "0")
	})}
	return hs.Serve(l)
}

// grpcCall makes one gRPC-shaped call (an h2c POST with content-type
// application/grpc and a 5-byte empty message) to addr with x/net/http2
// and checks that grpc-status 0 comes back in the trailers.
func grpcCall(t *testing.T, addr string) {
	t.Helper()
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, network, a)
		},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("POST", "http://"+addr+"/grpc.health.v1.Health/Check", bytes.NewReader([]byte{0, 0, 0, 0, 0}))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, []byte{0, 0, 0, 0, 0}, body)
	assert.Equal(t, "0", resp.Trailer.Get("Grpc-Status"))
}

// TestMuxSilentClientsDoNotDelayOthers: 1,000 clients connect and send nothing; one HTTP/1 client
// then connects and is served while all 1,000 are still waiting in detection.
func TestMuxSilentClientsDoNotDelayOthers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const silent = 1000
	raiseNoFile(t, 2*silent+512)

	m, serve := startMux(t, &detect.Detector{}, detect.MuxConfig{}) // default 10 s timeout and bound
	httpL := m.Match(detect.HTTP1)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "served")
	})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = hs.Serve(httpL) }()
	serveErr := serve()
	addr := m.Addr().String()

	conns := make([]net.Conn, 0, silent)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range silent {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	require.Eventually(t, func() bool { return m.Stats().InFlight == silent }, 20*time.Second, 5*time.Millisecond,
		"all silent clients accepted and detecting")

	assert.Equal(t, "served", httpGet(t, &http.Transport{}, "http://"+addr+"/"))

	// The HTTP client was served while every silent client is still held in detection, untouched.
	// (The mux counts a routed connection just after the hand-off, so wait for the count.)
	require.Eventually(t, func() bool { return m.Stats().Routed == 1 }, 10*time.Second, time.Millisecond)
	st := m.Stats()
	assert.Equal(t, int64(silent), st.InFlight, "silent clients still waiting")
	assert.Equal(t, int64(silent), st.Waiting, "in the Waiter, without a goroutine each")
	assert.Zero(t, st.ShedWaiting+st.ShedDetecting)
	assert.Zero(t, st.Shutdown+st.Unrouted+st.DetectFailed, "no silent client was dropped")
	for _, sc := range []net.Conn{conns[0], conns[silent/2], conns[silent-1]} {
		require.NoError(t, sc.SetReadDeadline(time.Now().Add(10*time.Millisecond)))
		_, err := sc.Read(make([]byte, 1))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "a silent client's connection is still open")
	}

	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
	st = m.Stats()
	assert.Equal(t, uint64(silent), st.Shutdown, "Close ended every pending detection")
	assert.Zero(t, st.InFlight)
	require.NoError(t, hs.Close())
	waitGroup(t, &wg, "the servers' goroutines")
	// Close closed the silent clients' server sides: they see EOF (or a reset).
	require.NoError(t, conns[0].SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := conns[0].Read(make([]byte, 1))
	assertPeerClosed(t, err, "Close closed a silent client's server side")
}

// TestMuxCloseClosesEveryChild: Close makes pending and later Accepts of every child fail with
// net.ErrClosed, Serve returns ErrMuxClosed, and Close waits for Serve's goroutines.
func TestMuxCloseClosesEveryChild(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m, serve := startMux(t, &detect.Detector{GRPC: detect.GRPCPassive}, detect.MuxConfig{})
	children := []net.Listener{m.Match(detect.HTTP1, detect.HTTP2), m.Match(detect.GRPC), m.Match(detect.TLS), m.Default()}
	serveErr := serve()

	errs := make(chan error, len(children))
	for _, l := range children {
		go func() {
			c, err := l.Accept()
			if c != nil {
				c.Close()
			}
			errs <- err
		}()
	}
	// A silent client in detection while the mux closes.
	c, err := net.Dial("tcp", m.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool { return m.Stats().InFlight == 1 }, 10*time.Second, time.Millisecond)

	require.NoError(t, m.Close())
	// Close waited for Serve's goroutines: the detection it cut short is already counted.
	st := m.Stats()
	assert.Equal(t, uint64(1), st.Shutdown)
	assert.Zero(t, st.InFlight)
	select {
	case err := <-serveErr:
		assert.ErrorIs(t, err, detect.ErrMuxClosed)
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	for range children {
		select {
		case err := <-errs:
			assert.ErrorIs(t, err, net.ErrClosed)
			assert.ErrorIs(t, err, detect.ErrMuxClosed)
		case <-time.After(10 * time.Second):
			t.Fatal("a child's Accept did not return after Close")
		}
	}
	for _, l := range children { // later Accepts fail at once
		assert.ErrorIs(t, acceptErr(t, l), net.ErrClosed)
	}
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the connection in detection was closed")

	assert.NoError(t, m.Close(), "a second Close is harmless")
	assert.ErrorIs(t, m.Serve(), detect.ErrMuxClosed, "Serve after Close")
	_, err = net.DialTimeout("tcp", m.Addr().String(), time.Second)
	assert.Error(t, err, "the parent listener is closed")
}

// TestMuxChildCloseKeepsSiblings: closing one child ends its Accept and closes (and counts) its
// later connections; the other children keep serving.
func TestMuxChildCloseKeepsSiblings(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var events muxEvents
	m, serve := startMux(t, nil, detect.MuxConfig{OnConn: events.add})
	httpL := m.Match(detect.HTTP1)
	rawL := m.Default()
	var wg sync.WaitGroup
	wg.Add(1)
	go echoServe(rawL, &wg)
	serveErr := serve()
	addr := m.Addr().String()

	accepted := make(chan error, 1)
	go func() {
		_, err := httpL.Accept()
		accepted <- err
	}()
	time.Sleep(10 * time.Millisecond) // let Accept block (the test holds either way)
	require.NoError(t, httpL.Close())
	select {
	case err := <-accepted:
		assert.ErrorIs(t, err, net.ErrClosed, "Accept honours Close")
		assert.NotErrorIs(t, err, detect.ErrMuxClosed, "only the child closed")
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after the child's Close")
	}
	assert.ErrorIs(t, httpL.Close(), net.ErrClosed, "second Close reports it")

	// An HTTP/1 client now is detected, then closed and counted.
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = c.Read(make([]byte, 1))
	assertPeerClosed(t, err, "closed by the mux")
	assert.Equal(t, uint64(1), m.Stats().ChildClosed)
	assert.Equal(t, 1, events.count(detect.MuxChildClosed, detect.HTTP1))

	// The sibling still serves.
	e, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer e.Close()
	require.NoError(t, e.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(e, "\x00still here")
	require.NoError(t, err)
	got := make([]byte, 11)
	_, err = io.ReadFull(e, got)
	require.NoError(t, err)
	assert.Equal(t, "\x00still here", string(got))
	e.Close()

	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
	waitGroup(t, &wg, "the servers' goroutines")
}

// TestMuxUnroutedIsClosed: a protocol with no child and no Default is closed and counted, not
// leaked; gRPC without a GRPC child goes to the HTTP/2 child.
func TestMuxUnroutedIsClosed(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var events muxEvents
	m, serve := startMux(t, nil, detect.MuxConfig{OnConn: events.add})
	_ = m.Match(detect.HTTP1) // never Accepts: must not matter for other protocols
	serveErr := serve()

	closedByMux := func(c net.Conn) {
		t.Helper()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err := c.Read(make([]byte, 1))
		assertPeerClosed(t, err, "the mux closed the unrouted connection")
	}
	for _, first := range []string{"SSH-2.0-x\r\n", "\x00\x00\x00\x08\x04\xd2\x16\x2f"} {
		c, err := net.Dial("tcp", m.Addr().String())
		require.NoError(t, err)
		_, err = io.WriteString(c, first)
		require.NoError(t, err)
		closedByMux(c)
		c.Close()
	}
	// A real TLS client: its handshake fails because the mux closes the connection.
	c, err := net.Dial("tcp", m.Addr().String())
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	tc := tls.Client(c, &tls.Config{ServerName: "sniff.test", InsecureSkipVerify: true})
	err = tc.Handshake()
	assert.Error(t, err)
	assert.NotErrorIs(t, err, os.ErrDeadlineExceeded)
	c.Close()

	require.Eventually(t, func() bool { st := m.Stats(); return st.Unrouted == 3 && st.InFlight == 0 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, 1, events.count(detect.MuxUnrouted, detect.TLS))
	assert.Equal(t, 2, events.count(detect.MuxUnrouted, detect.Unknown))

	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
}

// echoDefault serves m's Default child with an echo until the test ends.
func echoDefault(t *testing.T, m *detect.Mux) {
	var wg sync.WaitGroup
	wg.Add(1)
	go echoServe(m.Default(), &wg)
	t.Cleanup(func() { m.Close(); waitGroup(t, &wg, "the echo server") })
}

// roundTrip writes msg on c and reads back len(want) bytes.
func roundTrip(t *testing.T, c net.Conn, msg, want string) {
	t.Helper()
	_, err := io.WriteString(c, msg)
	require.NoError(t, err)
	got := make([]byte, len(want))
	_, err = io.ReadFull(bounded(c), got)
	require.NoError(t, err)
	assert.Equal(t, want, string(got))
}

// TestMuxShedsOldestWaiting: with MaxWaiting silent clients waiting, a new client does not stop
// the accept loop: the client that waited longest is decided early as a timeout and routed to
// Default, intact, counted and reported as shed.
func TestMuxShedsOldestWaiting(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var events muxEvents
	m, serve := startMux(t, nil, detect.MuxConfig{MaxWaiting: 2, OnConn: events.add})
	echoDefault(t, m)
	serveErr := serve()
	var silent []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", m.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		silent = append(silent, c)
		require.Eventually(t, func() bool { return m.Stats().Accepted == uint64(i+1) }, 10*time.Second, time.Millisecond)
	}
	require.Eventually(t, func() bool { return m.Stats().Routed == 1 }, 10*time.Second, time.Millisecond)
	st := m.Stats()
	assert.Equal(t, uint64(1), st.ShedWaiting)
	assert.Equal(t, int64(2), st.Waiting, "the two newest still wait")
	// The shed client reached Default with nothing lost: it is echoed.
	roundTrip(t, silent[0], "first words", "first words")
	require.Eventually(t, func() bool { return events.count(detect.MuxRouted, detect.Unknown) == 1 }, 10*time.Second, time.Millisecond)
	events.mu.Lock()
	ev := events.evs[0]
	events.mu.Unlock()
	assert.True(t, ev.Shed)
	assert.Equal(t, detect.ReasonTimeout, ev.Result.Reason)
	// A waiting client that speaks is detected as usual.
	roundTrip(t, silent[2], "\x00raw", "\x00raw")
	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
	assert.Equal(t, uint64(1), m.Stats().ShedWaiting)
}

// TestMuxShedsOldestDetecting: with MaxDetections clients in detection, the next client to speak
// sheds the detection that started first: it goes to Default as a timeout, and what it had sent
// is replayed there.
func TestMuxShedsOldestDetecting(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var events muxEvents
	m, serve := startMux(t, nil, detect.MuxConfig{MaxDetections: 1, OnConn: events.add})
	httpL := m.Match(detect.HTTP1)
	echoDefault(t, m)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = hs.Serve(httpL) }()
	serveErr := serve()

	slow, err := net.Dial("tcp", m.Addr().String())
	require.NoError(t, err)
	defer slow.Close()
	_, err = io.WriteString(slow, "GE") // a method's start: the matchers need more
	require.NoError(t, err)
	require.Eventually(t, func() bool { return m.Stats().Detecting == 1 }, 10*time.Second, time.Millisecond)

	assert.Equal(t, "ok", httpGet(t, &http.Transport{}, "http://"+m.Addr().String()+"/"))
	require.Eventually(t, func() bool { return m.Stats().ShedDetecting == 1 }, 10*time.Second, time.Millisecond)
	// The shed client is echoed by Default, its first two bytes included.
	_, err = io.WriteString(slow, "T")
	require.NoError(t, err)
	got := make([]byte, 3)
	_, err = io.ReadFull(bounded(slow), got)
	require.NoError(t, err)
	assert.Equal(t, "GET", string(got))

	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
	require.NoError(t, hs.Close())
	waitGroup(t, &wg, "the HTTP server")
	assert.Equal(t, 1, events.count(detect.MuxRouted, detect.HTTP1))
	assert.Equal(t, 1, events.count(detect.MuxRouted, detect.Unknown))
}

// TestMuxShutdownDrains: Shutdown stops accepting, closes the clients that have said nothing, and
// lets a client in the middle of detection finish and be served.
func TestMuxShutdownDrains(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var events muxEvents
	m, serve := startMux(t, nil, detect.MuxConfig{OnConn: events.add})
	httpL := m.Match(detect.HTTP1)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "drained") })}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = hs.Serve(httpL) }()
	serveErr := serve()
	addr := m.Addr().String()

	silent, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer silent.Close()
	half, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer half.Close()
	_, err = io.WriteString(half, "GET /")
	require.NoError(t, err)
	require.Eventually(t, func() bool { st := m.Stats(); return st.Waiting == 1 && st.Detecting == 1 }, 10*time.Second, time.Millisecond)

	shut := make(chan error, 1)
	go func() { shut <- m.Shutdown(context.Background()) }()
	// The silent client is closed; nobody new is accepted.
	_, err = bounded(silent).Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "a client that said nothing is closed")
	probes := 0 // probe connections that got in before the listener closed: Shutdown may count them
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			probes++
			c.Close()
		}
		return err != nil
	}, 10*time.Second, 5*time.Millisecond, "the listener is closed")
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a client was still being detected", err)
	default:
	}
	// The client in detection finishes its request and is served.
	_, err = io.WriteString(half, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(bounded(half)), nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "drained", string(b))
	assert.NoError(t, recv(t, shut, "Shutdown to return"))
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
	require.NoError(t, hs.Close())
	waitGroup(t, &wg, "the HTTP server")
	st := m.Stats()
	assert.Equal(t, uint64(1), st.Routed)
	// The silent client, and any probe the mux accepted before its listener closed.
	assert.GreaterOrEqual(t, st.Shutdown, uint64(1))
	assert.LessOrEqual(t, st.Shutdown, uint64(1+probes))
	assert.Zero(t, st.InFlight)
}

// TestMuxShutdownDeadline: a Shutdown whose context ends first closes the mux at once and says so.
func TestMuxShutdownDeadline(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m, serve := startMux(t, nil, detect.MuxConfig{})
	_ = m.Match(detect.HTTP1)
	serveErr := serve()
	c, err := net.Dial("tcp", m.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET /") // never finishes
	require.NoError(t, err)
	require.Eventually(t, func() bool { return m.Stats().Detecting == 1 }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, m.Shutdown(ctx), context.DeadlineExceeded)
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
	_, err = bounded(c).Read(make([]byte, 1))
	assertPeerClosed(t, err, "the client in detection was closed")
	assert.Equal(t, uint64(1), m.Stats().Shutdown)
}

// flakyListener fails its first Accepts with EMFILE, as a process out of descriptors does.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// TestMuxSurvivesEMFILE: running out of descriptors is waited out and counted; the mux goes on
// serving.
func TestMuxSurvivesEMFILE(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m := detect.NewMux(&flakyListener{Listener: ln, fails: 3}, nil)
	echoDefault(t, m)
	serveErr := make(chan error, 1)
	go func() { serveErr <- m.Serve() }()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	roundTrip(t, c, "\x00after EMFILE", "\x00after EMFILE")
	assert.Equal(t, uint64(3), m.Stats().AcceptErrors)
	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
}

// errListener fails Accept with a permanent error after handing out nothing.
type errListener struct {
	net.Listener
	err error
}

func (l errListener) Accept() (net.Conn, error) { return nil, l.err }

// TestMuxServeEndsOnListenerError: a permanent Accept error ends Serve with that error and closes
// the children; Serve cannot run twice.
func TestMuxServeEndsOnListenerError(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	boom := errors.New("boom")
	m := detect.NewMux(errListener{ln, boom}, nil)
	child := m.Default()
	assert.ErrorIs(t, m.Serve(), boom)
	assert.ErrorIs(t, acceptErr(t, child), net.ErrClosed)
	assert.ErrorIs(t, m.Serve(), detect.ErrMuxClosed)
	assert.NoError(t, m.Close())
}

func TestMuxServeTwice(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m, serve := startMux(t, nil, detect.MuxConfig{})
	_ = m.Default()
	serveErr := serve()
	c, err := net.Dial("tcp", m.Addr().String()) // once accepted, Serve is surely running
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool { return m.Stats().Accepted == 1 }, 10*time.Second, time.Millisecond)
	assert.ErrorIs(t, m.Serve(), detect.ErrMuxServing)
	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
}

func TestMuxOutcomeString(t *testing.T) {
	for o, s := range map[detect.MuxOutcome]string{
		detect.MuxRouted: "routed", detect.MuxUnrouted: "unrouted", detect.MuxChildClosed: "child_closed",
		detect.MuxDetectFailed: "detect_failed", detect.MuxShutdown: "shutdown",
		detect.MuxOutcome(200): "unknown",
	} {
		assert.Equal(t, s, o.String())
	}
}

// TestMuxChurnAccounting: many concurrent clients of every kind (HTTP/1, unknown, silent, closing at
// once, a closed child's protocol) while the mux closes in the middle. Every accepted connection ends
// in exactly one outcome, nothing stays in flight, and no goroutine is left.
func TestMuxChurnAccounting(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var events muxEvents
	m, serve := startMux(t, &detect.Detector{Timeout: 300 * time.Millisecond}, detect.MuxConfig{MaxDetections: 16, OnConn: events.add})
	httpL := m.Match(detect.HTTP1)
	tlsL := m.Match(detect.TLS)
	require.NoError(t, tlsL.Close())
	rawL := m.Default()
	var wg sync.WaitGroup
	wg.Add(1)
	go echoServe(rawL, &wg)
	wg.Add(1)
	go func() { // an HTTP "server" that answers one line and closes
		defer wg.Done()
		for {
			c, err := httpL.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
			c.Close()
		}
	}()
	serveErr := serve()

	firsts := []string{"GET / HTTP/1.1\r\n\r\n", "\x00raw", "", "close", "tls"}
	var clients sync.WaitGroup
	for i := range 200 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			c, err := net.DialTimeout("tcp", m.Addr().String(), 10*time.Second)
			if err != nil {
				return // the mux may already be closed
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Second)) // a silent client routed to the echo stays until then
			switch f := firsts[i%len(firsts)]; f {
			case "":
				_, _ = c.Read(make([]byte, 1)) // silent until the mux closes or times it out
			case "close":
				return
			case "tls": // its child is closed: the mux closes it
				_ = tls.Client(c, &tls.Config{ServerName: "sniff.test", InsecureSkipVerify: true}).Handshake()
			default:
				if _, err := io.WriteString(c, f); err != nil {
					return
				}
				_, _ = c.Read(make([]byte, 64))
			}
		}()
	}
	require.Eventually(t, func() bool {
		st := m.Stats()
		return st.Accepted >= 150 && st.Routed > 0 && st.ChildClosed > 0
	}, 30*time.Second, time.Millisecond)
	require.NoError(t, m.Close()) // while the last clients are still arriving
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
	waitGroup(t, &clients, "the clients")
	waitGroup(t, &wg, "the servers' goroutines")

	st := m.Stats()
	t.Logf("%+v", st)
	assert.Zero(t, st.InFlight)
	assert.Equal(t, st.Accepted, st.Routed+st.Unrouted+st.ChildClosed+st.DetectFailed+st.Shutdown,
		"every accepted connection has exactly one outcome")
	events.mu.Lock()
	assert.Len(t, events.evs, int(st.Accepted), "one OnConn event per accepted connection")
	events.mu.Unlock()
	assert.Positive(t, st.Routed)
	assert.Positive(t, st.ChildClosed)
}

// failingConn is a connection whose reads fail.
type failingConn struct {
	net.Conn
	err error
}

func (c failingConn) Read([]byte) (int, error) { return 0, c.err }

// connsListener hands out the given connections, then blocks until closed.
type connsListener struct {
	net.Listener
	conns chan net.Conn
}

func (l connsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	default:
	}
	return l.Listener.Accept()
}

// TestMuxDetectFailedIsCounted: a connection whose read fails during detection ends as
// MuxDetectFailed with the read error, closed and counted.
func TestMuxDetectFailedIsCounted(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a, b := net.Pipe()
	defer b.Close()
	boom := errors.New("boom")
	conns := make(chan net.Conn, 1)
	conns <- failingConn{a, boom}
	var events muxEvents
	m := detect.NewMux(connsListener{ln, conns}, nil, detect.MuxConfig{OnConn: events.add})
	_ = m.Default()
	serveErr := make(chan error, 1)
	go func() { serveErr <- m.Serve() }()

	require.Eventually(t, func() bool { return m.Stats().DetectFailed == 1 }, 10*time.Second, time.Millisecond)
	events.mu.Lock()
	evs := append([]detect.MuxEvent(nil), events.evs...)
	events.mu.Unlock()
	require.Len(t, evs, 1)
	ev := evs[0]
	assert.Equal(t, detect.MuxDetectFailed, ev.Outcome)
	assert.ErrorIs(t, ev.Err, boom)
	_, err = b.Write([]byte("x"))
	assert.ErrorIs(t, err, io.ErrClosedPipe, "the mux closed the failed connection")

	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
}

// TestMuxCloseWithoutServe: Close before Serve closes the parent and the children, and a later
// Serve returns at once.
func TestMuxCloseWithoutServe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m := detect.NewMux(ln, nil)
	child := m.Match(detect.HTTP1)
	require.NoError(t, m.Close())
	assert.ErrorIs(t, acceptErr(t, child), detect.ErrMuxClosed)
	assert.ErrorIs(t, m.Serve(), detect.ErrMuxClosed)
	late := m.Default() // a child taken after Close is closed too
	assert.ErrorIs(t, acceptErr(t, late), net.ErrClosed)
	assert.ErrorIs(t, acceptErr(t, ln), net.ErrClosed, "the parent listener was closed")
}

// assertPeerClosed checks that err ends a read from a connection whose
// peer closed it: io.EOF, or ECONNRESET when the peer closed with bytes
// of ours unread (a timeout or any other error fails).
func assertPeerClosed(t *testing.T, err error, msg string) {
	t.Helper()
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET),
		"%s: got %v, want EOF or ECONNRESET", msg, err)
}

// TestMuxSilentDetached: clients silent past the Waiter's DetachAfter wait as their descriptors
// alone, and go on either way: one that then speaks is detected and routed, one silent until the
// detection timeout reaches Default, decided as a timeout; both with nothing lost.
func TestMuxSilentDetached(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("detaching needs the Waiter's epoll set")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var events muxEvents
	timeout := 3 * detect.DefaultDetachAfter
	m, serve := startMux(t, &detect.Detector{Timeout: timeout}, detect.MuxConfig{OnConn: events.add})
	echoDefault(t, m)
	serveErr := serve()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", m.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	speaker, silent := dial(), dial()
	require.Eventually(t, func() bool { return m.Stats().Detached == 2 }, timeout*2/3, 5*time.Millisecond,
		"both detached before the detection timeout")
	roundTrip(t, speaker, "\x00spoke late", "\x00spoke late")
	require.Eventually(t, func() bool { return events.count(detect.MuxRouted, detect.Unknown) == 2 }, 3*timeout, 5*time.Millisecond,
		"the silent one decided at its timeout")
	roundTrip(t, silent, "after the timeout", "after the timeout")
	events.mu.Lock()
	reasons := []detect.Reason{events.evs[0].Result.Reason, events.evs[1].Result.Reason}
	events.mu.Unlock()
	assert.ElementsMatch(t, []detect.Reason{detect.ReasonNoMatch, detect.ReasonTimeout}, reasons)
	st := m.Stats()
	assert.Equal(t, uint64(2), st.Routed)
	assert.Zero(t, st.ShedWaiting+st.DetectFailed+st.Shutdown)
	// The Waiter's own counts, as metrics.Registry.AddWaiter reads them: one spoke, one timed out.
	assert.Equal(t, detect.WaitStats{Ready: 1, TimedOut: 1, Detached: 2}, m.WaitStats())
	require.NoError(t, m.Close())
	assert.ErrorIs(t, recv(t, serveErr, "Serve to return"), detect.ErrMuxClosed)
}
