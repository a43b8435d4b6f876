package splice

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// transport is how the test wraps the TCP connections around the relay.
type transport string

const (
	trTCP    transport = "tcp"    // *net.TCPConn on both sides: the splice path
	trTLS    transport = "tls"    // TLS on both sides: the buffer path
	trReplay transport = "replay" // a is a test replaying conn (Unwrapper) over TCP
	trDetect transport = "detect" // a is detect.ReplayConn over TCP
)

var transports = []transport{trTCP, trTLS, trReplay, trDetect}

// preamble is sent by every client first; the replay transport's relay
// reads it before Join (as a detector would) and replays it.
const preamble = "PRE!"

// replayConn replays buf, then reads the conn it wraps: the shape of
// package detect's replaying connection.
type replayConn struct {
	net.Conn
	buf []byte
}

func (r *replayConn) Read(b []byte) (int, error) {
	if len(r.buf) > 0 {
		n := copy(b, r.buf)
		r.buf = r.buf[n:]
		return n, nil
	}
	return r.Conn.Read(b)
}
func (r *replayConn) Buffered() int     { return len(r.buf) }
func (r *replayConn) NetConn() net.Conn { return r.Conn }
func (r *replayConn) CloseWrite() error { return r.Conn.(*net.TCPConn).CloseWrite() }

var (
	tlsOnce          sync.Once
	tlsSrv, tlsCli   *tls.Config
	errTLSConfigInit error
)

func tlsConfigs(t testing.TB) (srv, cli *tls.Config) {
	tlsOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			errTLSConfigInit = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "splice test"},
			DNSNames:     []string{"splice.test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			errTLSConfigInit = err
			return
		}
		leaf, _ := x509.ParseCertificate(der)
		pool := x509.NewCertPool()
		pool.AddCert(leaf)
		tlsSrv = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}}
		tlsCli = &tls.Config{RootCAs: pool, ServerName: "splice.test"}
	})
	require.NoError(t, errTLSConfigInit)
	return tlsSrv, tlsCli
}

func listen(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}

type joinOut struct {
	st  Stats
	err error
}

// env is one client -> relay(Join) -> server pipeline over loopback.
type env struct {
	client, server net.Conn
	clientTCP      *net.TCPConn // under client
	serverTCP      *net.TCPConn // under server
	done           chan joinOut
}

// wait returns Join's result, failing the test after a generous timeout.
func (e *env) wait(t testing.TB) joinOut {
	t.Helper()
	select {
	case r := <-e.done:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("Join did not return")
		return joinOut{}
	}
}

// newEnv builds a pipeline: client dials the relay, the relay accepts a,
// dials the server (b) and runs j.Join(ctx, a, b, obs) in a goroutine.
// It returns once the preamble went through, so Join is running.
func newEnv(t testing.TB, tr transport, j *Joiner, ctx context.Context, obs Observer) *env {
	t.Helper()
	return newEnvWith(t, tr, func(a, b net.Conn, out chan<- joinOut) {
		go func() {
			st, err := j.Join(ctx, a, b, obs)
			out <- joinOut{st, err}
		}()
	})
}

// newEnvLoop is newEnv with l.Start in place of Join.
func newEnvLoop(t testing.TB, tr transport, l *Loop, ctx context.Context, obs Observer) *env {
	t.Helper()
	return newEnvWith(t, tr, func(a, b net.Conn, out chan<- joinOut) {
		err := l.Start(ctx, a, b, obs, func(st Stats) { out <- joinOut{st, st.Err} })
		if err != nil {
			out <- joinOut{err: err}
		}
	})
}

// newEnvWith builds the pipeline of newEnv; start joins a and b and sends
// the result to out once.
func newEnvWith(t testing.TB, tr transport, start func(a, b net.Conn, out chan<- joinOut)) *env {
	t.Helper()
	front, back := listen(t), listen(t)
	defer front.Close()
	defer back.Close()
	e := &env{done: make(chan joinOut, 1)}

	type accepted struct {
		c   net.Conn
		err error
	}
	fa := make(chan accepted, 1)
	go func() { c, err := front.Accept(); fa <- accepted{c, err} }()
	cc, err := net.Dial("tcp", front.Addr().String())
	require.NoError(t, err)
	r := <-fa
	require.NoError(t, r.err)
	aTCP := r.c.(*net.TCPConn)
	e.clientTCP = cc.(*net.TCPConn)

	ba := make(chan accepted, 1)
	go func() { c, err := back.Accept(); ba <- accepted{c, err} }()
	bc, err := net.Dial("tcp", back.Addr().String())
	require.NoError(t, err)
	r = <-ba
	require.NoError(t, r.err)
	e.serverTCP = r.c.(*net.TCPConn)

	var a, b net.Conn = aTCP, bc
	e.client, e.server = cc, r.c
	switch tr {
	case trTLS:
		srv, cli := tlsConfigs(t)
		a, b = tls.Server(aTCP, srv), tls.Client(bc, cli)
		e.client, e.server = tls.Client(cc, cli), tls.Server(r.c, srv)
	case trReplay:
	}
	// The client speaks first.
	wrote := make(chan error, 1)
	go func() { _, err := e.client.Write([]byte(preamble)); wrote <- err }()
	if tr == trReplay || tr == trDetect {
		buf := make([]byte, len(preamble))
		_, err := io.ReadFull(aTCP, buf)
		require.NoError(t, err)
		if tr == trReplay {
			a = &replayConn{Conn: aTCP, buf: buf}
		} else {
			a = detect.NewReplayConn(aTCP, buf)
		}
	}
	start(a, b, e.done)
	require.NoError(t, <-wrote)
	buf := make([]byte, len(preamble))
	e.server.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadFull(e.server, buf)
	require.NoError(t, err)
	e.server.SetReadDeadline(time.Time{})
	require.Equal(t, preamble, string(buf))
	t.Cleanup(func() { e.client.Close(); e.server.Close() })
	return e
}

// closeWrite half-closes c (a *net.TCPConn or a *tls.Conn).
func closeWrite(t testing.TB, c net.Conn) {
	t.Helper()
	require.NoError(t, c.(interface{ CloseWrite() error }).CloseWrite())
}

// reset aborts the TCP connection under c with a RST.
func reset(tcp *net.TCPConn) {
	tcp.SetLinger(0)
	tcp.Close()
}

// countFDs returns the number of open descriptors of this process and how
// many of them are pipes.
func countFDs(t testing.TB) (all, pipes int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue
		}
		all++
		if strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	return all, pipes
}

// eventually polls cond every 10ms for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isDeadline reports whether err is a deadline expiry.
func isDeadline(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// relayConfig is the configuration the shared test bodies give a relay:
// the fields Joiner and Loop have in common.
type relayConfig struct {
	IdleTimeout   time.Duration
	Lifetime      time.Duration
	DisableSplice bool
}

// relayEngine is a relay under test: Joiner.Join (joinEngine) or, on Linux,
// Loop (loopEngine). The shared test bodies (testHalfClose, ...) run against
// each; the top-level tests TestX and TestLoopX pick the engine.
type relayEngine struct {
	name string
	// start builds a client -> relay -> server pipeline (newEnv) with a
	// relay configured by cfg, and returns the relay's test hooks.
	start func(t testing.TB, tr transport, cfg relayConfig, ctx context.Context, obs Observer) (*env, *hooks)
	// startPipes joins a and b (connections without CloseWrite) and returns
	// the result once the join ends.
	startPipes func(t testing.TB, a, b net.Conn) <-chan joinOut
}

var joinEngine = relayEngine{
	name: "join",
	start: func(t testing.TB, tr transport, cfg relayConfig, ctx context.Context, obs Observer) (*env, *hooks) {
		j := &Joiner{IdleTimeout: cfg.IdleTimeout, Lifetime: cfg.Lifetime, DisableSplice: cfg.DisableSplice, hooks: &hooks{}}
		return newEnv(t, tr, j, ctx, obs), j.hooks
	},
	startPipes: func(t testing.TB, a, b net.Conn) <-chan joinOut {
		done := make(chan joinOut, 1)
		go func() { st, err := Join(context.Background(), a, b); done <- joinOut{st, err} }()
		return done
	},
}

// assertIdle checks that the relay of h holds no pooled buffer and no
// splice pipe (once its joins have ended).
func assertIdle(t testing.TB, h *hooks) {
	t.Helper()
	assert.True(t, eventually(10*time.Second, func() bool {
		return h.buffersOut.Load() == 0 && h.pipesOut.Load() == 0
	}), "%d buffers and %d pipes held", h.buffersOut.Load(), h.pipesOut.Load())
}

// flood writes 64 KiB at a time to c until a write fails, in a goroutine;
// the returned channel is closed then.
func flood(c net.Conn) <-chan struct{} {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	return stopped
}

// waitStuck waits until the relay of h has moved bytes and then stopped
// moving them (it is blocked on a peer that does not read).
func waitStuck(t testing.TB, h *hooks) {
	t.Helper()
	var last int64 = -1
	require.True(t, eventually(30*time.Second, func() bool {
		time.Sleep(100 * time.Millisecond)
		n := h.smallBytes.Load() + h.splicedBytes.Load()
		stuck := n == last && n > 0
		last = n
		return stuck
	}), "bytes stopped moving")
}

// helloRoundTrip writes "hello" to client and checks that the same five
// bytes come back (from an echoing peer behind the relay).
func helloRoundTrip(t testing.TB, client net.Conn) {
	t.Helper()
	_, err := client.Write([]byte("hello"))
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(client, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf))
}
