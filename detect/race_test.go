package detect_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
)

// Proxy modes of raceProxy.
const (
	modeRace   = iota // dial the upstream, then DetectUpstream (this package's rule)
	modeOpaque        // the port is declared opaque: dial and splice, no detection
	modeDetect        // Linkerd-style: Detect the client (with its timeout), then dial and splice
)

// raceProxy is a minimal loopback TCP proxy to one upstream address, detecting as its mode says and
// then splicing with io.Copy (splice(2) between *net.TCPConn) and half-close.
type raceProxy struct {
	ln       net.Listener
	mode     int
	det      *detect.Detector
	upstream atomic.Pointer[string]
	results  chan detect.Result
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func startRaceProxy(tb testing.TB, mode int, d *detect.Detector, upstream string) *raceProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	p := &raceProxy{ln: ln, mode: mode, det: d, results: make(chan detect.Result, 64), conns: map[net.Conn]struct{}{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.upstream.Store(&upstream)
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(p.close)
	return p
}

func (p *raceProxy) addr() string { return p.ln.Addr().String() }

func (p *raceProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *raceProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *raceProxy) dial() (net.Conn, error) {
	up, err := net.Dial("tcp", *p.upstream.Load())
	if err == nil && !p.track(up) {
		up.Close()
		return nil, net.ErrClosed
	}
	return up, err
}

func (p *raceProxy) report(r detect.Result) {
	select {
	case p.results <- r:
	default:
	}
}

func (p *raceProxy) handle(c net.Conn) {
	defer c.Close()
	switch p.mode {
	case modeOpaque:
		up, err := p.dial()
		if err != nil {
			return
		}
		joinConns(c, up)
	case modeRace:
		up, err := p.dial()
		if err != nil {
			return
		}
		res, c2, up2, err := p.det.DetectUpstream(p.ctx, c, up)
		if err != nil {
			up.Close()
			return
		}
		p.report(res)
		joinConns(c2, up2)
	case modeDetect:
		res, c2, err := p.det.Detect(p.ctx, c)
		if err != nil {
			return
		}
		p.report(res)
		up, err := p.dial()
		if err != nil {
			return
		}
		joinConns(c2, up)
	}
}

func (p *raceProxy) close() {
	p.cancel()
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// joinConns copies both ways until both directions end, propagating half-close, then closes both.
func joinConns(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// upstreamServer accepts on loopback, runs handle for each connection and
// returns the listener's address.
func upstreamServer(tb testing.TB, handle func(c net.Conn)) string {
	tb.Helper()
	return testnet.Serve(tb, handle).Addr().String()
}

func nextResult(t *testing.T, p *raceProxy) detect.Result {
	t.Helper()
	select {
	case r := <-p.results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no detection result")
		return detect.Result{}
	}
}

// mysqlGreeting is a MariaDB-style initial handshake packet (protocol 10), as a server sends it
// unprompted on connect.
func mysqlGreeting() []byte {
	var p []byte
	p = append(p, 10)                                       // protocol version
	p = append(p, "5.5.5-10.11.6-MariaDB-0+deb12u1\x00"...) // server version
	p = binary.LittleEndian.AppendUint32(p, 42)             // connection id
	p = append(p, "abcdefgh\x00"...)                        // auth-plugin-data part 1 + filler
	p = binary.LittleEndian.AppendUint16(p, 0xf7fe)         // capability flags (lower)
	p = append(p, 45)                                       // charset
	p = binary.LittleEndian.AppendUint16(p, 2)              // status flags
	p = binary.LittleEndian.AppendUint16(p, 0x81ff)         // capability flags (upper)
	p = append(p, 21)                                       // auth plugin data length
	p = append(p, make([]byte, 6)...)                       // filler
	p = binary.LittleEndian.AppendUint32(p, 0x1d)           // MariaDB extended capabilities
	p = append(p, "ijklmnopqrst\x00"...)                    // auth-plugin-data part 2
	p = append(p, "mysql_native_password\x00"...)
	hdr := []byte{byte(len(p)), byte(len(p) >> 8), byte(len(p) >> 16), 0} // length, sequence 0
	return append(hdr, p...)
}

// TestDetectUpstreamServerFirst: through a proxy port not declared opaque, a server that greets
// first (SMTP "220", a MySQL handshake packet) reaches the client within 50 ms of the server
// sending it, and every byte both ways is intact.
func TestDetectUpstreamServerFirst(t *testing.T) {
	raceLeakCheck(t)
	payload := make([]byte, 1<<20)
	_, _ = rand.Read(payload)

	for _, tc := range []struct {
		name     string
		greeting []byte
	}{
		{"SMTP", []byte("220 mail.sniff.test ESMTP Postfix (Debian/GNU)\r\n")},
		{"MySQL", mysqlGreeting()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := make(chan time.Time, 5)
			upSum := make(chan [32]byte, 5)
			up := upstreamServer(t, func(c net.Conn) {
				sent <- time.Now()
				if _, err := c.Write(tc.greeting); err != nil {
					return
				}
				// Read the client's payload, answer with its digest and our own payload.
				got := make([]byte, len(payload))
				if _, err := io.ReadFull(c, got); err != nil {
					return
				}
				upSum <- sha256.Sum256(got)
				_, _ = c.Write(payload)
			})
			p := startRaceProxy(t, modeRace, &detect.Detector{}, up)

			// Five connections; the bound holds for the median, so two scheduling hiccups of a
			// loaded machine do not fail the test, while waiting on any timer would.
			const conns = 5
			var lats []time.Duration
			var c net.Conn
			for i := range conns {
				var err error
				c, err = net.Dial("tcp", p.addr())
				require.NoError(t, err)
				defer c.Close()
				require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
				g := make([]byte, len(tc.greeting))
				_, err = io.ReadFull(c, g)
				got := time.Now()
				require.NoError(t, err)
				assert.Equal(t, tc.greeting, g)
				lats = append(lats, got.Sub(recv(t, sent, "sent")))
				res := nextResult(t, p)
				assert.Equal(t, detect.ReasonServerFirst, res.Reason)
				assert.Equal(t, detect.Unknown, res.Protocol)
				if i < conns-1 {
					c.Close()
				}
			}
			t.Logf("greeting reached the client %v after the server sent it", lats)
			slices.Sort(lats)
			assert.Less(t, lats[conns/2], 50*time.Millisecond, "median")
			assert.Less(t, lats[conns-1], 2*time.Second, "worst")

			// Both ways, 1 MiB each, intact.
			werr := make(chan error, 1)
			go func() { _, err := c.Write(payload); werr <- err }()
			back := make([]byte, len(payload))
			_, err := io.ReadFull(c, back)
			require.NoError(t, err)
			require.NoError(t, recv(t, werr, "werr"))
			assert.Equal(t, sha256.Sum256(payload), recv(t, upSum, "upSum"), "client to server intact")
			assert.True(t, bytes.Equal(payload, back), "server to client intact")
		})
	}
}

// TestDetectUpstreamUpstreamClosesFirst: an upstream that closes without a byte (a peer proxy that
// could not reach its application) is no server speaking first: the client is awaited and its
// protocol detected, on the peek path (TCP) and on the read path (pipes).
func TestDetectUpstreamUpstreamClosesFirst(t *testing.T) {
	raceLeakCheck(t)
	for _, tr := range []string{"tcp", "pipe"} {
		t.Run(tr, func(t *testing.T) {
			var client, proxySide, up, upPeer net.Conn
			if tr == "tcp" {
				client, proxySide = raceTCPPair(t)
				up, upPeer = raceTCPPair(t)
			} else {
				client, proxySide = net.Pipe()
				up, upPeer = net.Pipe()
			}
			defer client.Close()
			defer proxySide.Close()
			defer up.Close()
			upPeer.Close() // the upstream goes away at once, saying nothing
			go func() {
				time.Sleep(50 * time.Millisecond) // the upstream's EOF surely comes first
				_, _ = io.WriteString(client, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, _, _, err := (&detect.Detector{}).DetectUpstream(ctx, proxySide, up)
			require.NoError(t, err)
			assert.Equal(t, detect.HTTP1, res.Protocol, "the client decides, not the closed upstream")
			assert.Equal(t, detect.ReasonMatched, res.Reason)
		})
	}
}

// TestDetectUpstreamSilentClientThenMemcache: a client that connects and says nothing for 3 s (a
// pooled Memcache connection) is not timed out by detection; its `get` is classified at once and
// served with no extra delay. The Detector's timeout (2 s) is shorter than the silence on purpose.
func TestDetectUpstreamSilentClientThenMemcache(t *testing.T) {
	raceLeakCheck(t)
	up := upstreamServer(t, func(c net.Conn) {
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if string(buf[:n]) == "get sniff\r\n" {
			io.WriteString(c, "VALUE sniff 0 5\r\nhello\r\nEND\r\n")
		}
	})
	p := startRaceProxy(t, modeRace, &detect.Detector{Timeout: 2 * time.Second}, up)

	c, err := net.Dial("tcp", p.addr())
	require.NoError(t, err)
	defer c.Close()
	time.Sleep(3 * time.Second)
	select {
	case r := <-p.results:
		t.Fatalf("detection ended during the silence: %+v", r)
	default:
	}

	start := time.Now()
	_, err = io.WriteString(c, "get sniff\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	want := "VALUE sniff 0 5\r\nhello\r\nEND\r\n"
	got := make([]byte, len(want))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	elapsed := time.Since(start)
	assert.Equal(t, want, string(got))

	res := nextResult(t, p)
	assert.Equal(t, detect.Unknown, res.Protocol)
	assert.Equal(t, detect.ReasonNoMatch, res.Reason, "decided by the first byte, not by a timeout")
	t.Logf("served %v after the client's first bytes; detection took %v", elapsed, res.Duration)
	// No timer is involved: anything near the 2 s timeout would mean detection waited (half of it
	// leaves a loaded machine's scheduling its margin).
	assert.Less(t, res.Duration, time.Second)
	assert.Less(t, elapsed, time.Second)
}

// TestDetectUpstreamHTTP1StillDetected: on the same kind of undeclared port, a client-first HTTP/1
// client is detected as HTTP/1 and served.
func TestDetectUpstreamHTTP1StillDetected(t *testing.T) {
	raceLeakCheck(t)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(hl) }()
	defer func() { hs.Close(); recv(t, done, "done") }()

	p := startRaceProxy(t, modeRace, &detect.Detector{}, hl.Addr().String())
	assert.Equal(t, "GET /hello", httpGet(t, &http.Transport{}, "http://"+p.addr()+"/hello"))
	res := nextResult(t, p)
	assert.Equal(t, detect.HTTP1, res.Protocol)
	assert.Equal(t, detect.ReasonMatched, res.Reason)
	assert.Equal(t, "GET", res.HTTP.Method)
}

// TestDetectUpstreamOneProxyPort runs the three cases above through one proxy port, switching only
// the upstream behind it, as a sidecar's undeclared port would see them.
func TestDetectUpstreamOneProxyPort(t *testing.T) {
	raceLeakCheck(t)
	smtp := upstreamServer(t, func(c net.Conn) { io.WriteString(c, "220 ready\r\n"); io.Copy(io.Discard, c) })
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(hl) }()
	defer func() { hs.Close(); recv(t, done, "done") }()

	p := startRaceProxy(t, modeRace, &detect.Detector{}, smtp)
	c, err := net.Dial("tcp", p.addr())
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	g := make([]byte, 11)
	_, err = io.ReadFull(c, g)
	require.NoError(t, err)
	assert.Equal(t, "220 ready\r\n", string(g))
	c.Close()
	assert.Equal(t, detect.ReasonServerFirst, nextResult(t, p).Reason)

	h := hl.Addr().String()
	p.upstream.Store(&h)
	assert.Equal(t, "ok", httpGet(t, &http.Transport{}, "http://"+p.addr()+"/"))
	assert.Equal(t, detect.HTTP1, nextResult(t, p).Protocol)
}

// TestDetectUpstreamHTTP2PrefaceThenSilence: an upstream that sends an HTTP/2 SETTINGS frame to a
// client that never speaks is server-first after the Detector's timeout, not never.
func TestDetectUpstreamHTTP2PrefaceThenSilence(t *testing.T) {
	raceLeakCheck(t)
	_, cp := raceTCPPair(t)
	up, srv := raceTCPPair(t)
	_, err := srv.Write([]byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100})
	require.NoError(t, err)
	res, _, _, err := (&detect.Detector{Timeout: 200 * time.Millisecond}).DetectUpstream(context.Background(), cp, up)
	require.NoError(t, err)
	assert.Equal(t, detect.ReasonServerFirst, res.Reason)
	assert.GreaterOrEqual(t, res.Duration, 200*time.Millisecond)
}

// raceLeakCheck checks for leaked goroutines after every cleanup of the test has run (servers and
// proxies stop in cleanups registered later, which run first).
func raceLeakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// raceTCPPair returns a connected loopback pair, closed when the test ends.
func raceTCPPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	b, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// pipePair returns the two ends of an in-memory connection (the replay path: no MSG_PEEK).
func pipePair() (net.Conn, net.Conn) { return net.Pipe() }

// TestDetectUpstreamPipes covers the path for connections that cannot be peeked (pipes, TLS): the
// byte read during the race is handed back in front of the rest, on both sides.
func TestDetectUpstreamPipes(t *testing.T) {
	raceLeakCheck(t)
	ctx := context.Background()

	t.Run("server first", func(t *testing.T) {
		cli, cliProxy := pipePair()
		upProxy, srv := pipePair()
		defer cli.Close()
		defer srv.Close()
		go io.WriteString(srv, "220 hi\r\n")
		res, c, u, err := (&detect.Detector{}).DetectUpstream(ctx, cliProxy, upProxy)
		require.NoError(t, err)
		defer c.Close()
		defer u.Close()
		assert.Equal(t, detect.ReasonServerFirst, res.Reason)
		g := make([]byte, 8)
		_, err = io.ReadFull(u, g)
		require.NoError(t, err)
		assert.Equal(t, "220 hi\r\n", string(g), "the greeting's first byte is replayed")
	})

	t.Run("client first", func(t *testing.T) {
		cli, cliProxy := pipePair()
		upProxy, srv := pipePair()
		defer cli.Close()
		defer srv.Close()
		req := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
		go io.WriteString(cli, req)
		res, c, u, err := (&detect.Detector{}).DetectUpstream(ctx, cliProxy, upProxy)
		require.NoError(t, err)
		defer c.Close()
		defer u.Close()
		assert.Equal(t, detect.HTTP1, res.Protocol)
		g := make([]byte, len(req))
		_, err = io.ReadFull(c, g)
		require.NoError(t, err)
		assert.Equal(t, req, string(g))
		assert.Same(t, upProxy, u, "the upstream, untouched, is returned as given")
	})
}

// TestDetectUpstreamEOFAndCancel: an upstream that closes first is server-first (the close reaches
// the client by the splice); a client that half-closes first is detected (closed); a cancelled ctx
// ends a silent wait with ctx.Err() and leaves both connections usable (deadlines cleared).
func TestDetectUpstreamEOFAndCancel(t *testing.T) {
	raceLeakCheck(t)
	pair := func() (client, clientProxy, upProxy, server *net.TCPConn) {
		a, b := raceTCPPair(t)
		c, d := raceTCPPair(t)
		return a, b, c, d
	}

	t.Run("upstream closes", func(t *testing.T) {
		_, cp, up, srv := pair()
		srv.Close()
		res, _, _, err := (&detect.Detector{}).DetectUpstream(context.Background(), cp, up)
		require.NoError(t, err)
		assert.Equal(t, detect.ReasonServerFirst, res.Reason)
	})
	t.Run("client half-closes", func(t *testing.T) {
		cli, cp, up, _ := pair()
		require.NoError(t, cli.CloseWrite())
		res, _, _, err := (&detect.Detector{}).DetectUpstream(context.Background(), cp, up)
		require.NoError(t, err)
		assert.Equal(t, detect.ReasonClosed, res.Reason)
		assert.Equal(t, detect.Unknown, res.Protocol)
	})
	t.Run("cancel", func(t *testing.T) {
		cli, cp, up, srv := pair()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		res, c, u, err := (&detect.Detector{}).DetectUpstream(ctx, cp, up)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, detect.Unknown, res.Protocol)
		assert.Same(t, cp, c)
		assert.Same(t, up, u)
		// Still usable: deadlines were cleared.
		go io.WriteString(cli, "x")
		go io.WriteString(srv, "y")
		b := make([]byte, 1)
		_, err = io.ReadFull(c, b)
		require.NoError(t, err)
		_, err = io.ReadFull(u, b)
		require.NoError(t, err)
	})
	t.Run("already cancelled", func(t *testing.T) {
		_, cp, up, _ := pair()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, _, err := (&detect.Detector{}).DetectUpstream(ctx, cp, up)
		assert.True(t, errors.Is(err, context.Canceled))
	})
	t.Run("OnResult sees server-first", func(t *testing.T) {
		_, cp, up, srv := pair()
		io.WriteString(srv, "+OK\r\n")
		var seen atomic.Value
		d := &detect.Detector{OnResult: func(r *detect.Result) { seen.Store(*r) }}
		res, c, u, err := d.DetectUpstream(context.Background(), cp, up)
		require.NoError(t, err)
		assert.Equal(t, res, seen.Load())
		if runtime.GOOS == "linux" { // MSG_PEEK: nothing consumed, nothing wrapped
			assert.Same(t, cp, c)
			assert.Same(t, up, u)
		}
		b := make([]byte, 5)
		_, err = io.ReadFull(u, b)
		require.NoError(t, err)
		assert.Equal(t, "+OK\r\n", string(b))
	})
}

// BenchmarkServerFirst measures the time from a client's dial to the first byte of a server-first
// greeting, through a loopback proxy on a port that is not declared opaque (DetectUpstream), through
// the same proxy with the port declared opaque (plain splice), and through a Linkerd-style
// detect-then-timeout proxy. The detect-then-timeout case uses a 1 s timeout so the run stays short;
// Linkerd's default is 10 s, so its cost there is ten times this row. "direct" is the client dialing
// the server itself (the limit).
func BenchmarkServerFirst(b *testing.B) {
	greeting := []byte("220 mail.sniff.test ESMTP\r\n")
	up := upstreamServer(b, func(c net.Conn) {
		c.Write(greeting)
		io.Copy(io.Discard, c)
	})
	run := func(b *testing.B, addr string) {
		buf := make([]byte, len(greeting))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, up) })
	b.Run("opaque-declared", func(b *testing.B) {
		run(b, startRaceProxy(b, modeOpaque, &detect.Detector{}, up).addr())
	})
	b.Run("undeclared-DetectUpstream", func(b *testing.B) {
		run(b, startRaceProxy(b, modeRace, &detect.Detector{}, up).addr())
	})
	// The three fast paths alternated within each iteration, so that load from elsewhere on the
	// machine hits them alike: time to first byte per path, in µs, as custom metrics.
	b.Run("interleaved", func(b *testing.B) {
		paths := []struct {
			name string
			addr string
		}{
			{"direct-µs", up},
			{"opaque-µs", startRaceProxy(b, modeOpaque, &detect.Detector{}, up).addr()},
			{"race-µs", startRaceProxy(b, modeRace, &detect.Detector{}, up).addr()},
		}
		sums := make([]time.Duration, len(paths))
		buf := make([]byte, len(greeting))
		for b.Loop() {
			for i, p := range paths {
				t0 := time.Now()
				c, err := net.Dial("tcp", p.addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				sums[i] += time.Since(t0)
				c.Close()
			}
		}
		for i, p := range paths {
			b.ReportMetric(float64(sums[i].Microseconds())/float64(b.N), p.name)
		}
	})
	b.Run("undeclared-detect-timeout-1s", func(b *testing.B) {
		run(b, startRaceProxy(b, modeDetect, &detect.Detector{Timeout: time.Second}, up).addr())
	})
}

// BenchmarkDetectUpstream measures the decision itself on loopback TCP (MSG_PEEK: nothing is
// consumed, so one pair of connections serves every iteration): Detect alone on an HTTP/1 request,
// DetectUpstream with the same request already there (client first), and DetectUpstream with a
// silent client and an upstream greeting already there (server first), in one run:
//
//	go test -run '^$' -bench BenchmarkDetectUpstream -benchmem ./detect/
func BenchmarkDetectUpstream(b *testing.B) {
	pair := func() (*net.TCPConn, *net.TCPConn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		a, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		c, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { a.Close(); c.Close() })
		return a.(*net.TCPConn), c.(*net.TCPConn)
	}
	ctx := context.Background()
	d := &detect.Detector{}
	check := func(b *testing.B, want detect.Reason, got detect.Result, err error) {
		if err != nil || got.Reason != want {
			b.Fatalf("got %+v, %v; want reason %v", got, err, want)
		}
	}
	b.Run("Detect-HTTP1", func(b *testing.B) {
		cli, cp := pair()
		cli.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		b.ReportAllocs()
		for b.Loop() {
			r, _, err := d.Detect(ctx, cp)
			check(b, detect.ReasonMatched, r, err)
		}
	})
	b.Run("DetectUpstream-client-first-HTTP1", func(b *testing.B) {
		cli, cp := pair()
		up, _ := pair()
		cli.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		b.ReportAllocs()
		for b.Loop() {
			r, _, _, err := d.DetectUpstream(ctx, cp, up)
			check(b, detect.ReasonMatched, r, err)
		}
	})
	b.Run("DetectUpstream-server-first", func(b *testing.B) {
		_, cp := pair()
		up, srv := pair()
		srv.Write([]byte("220 ready\r\n"))
		b.ReportAllocs()
		for b.Loop() {
			r, _, _, err := d.DetectUpstream(ctx, cp, up)
			check(b, detect.ReasonServerFirst, r, err)
		}
	})
}

// TestDetectUpstreamTLSUpstream: an outbound proxy's upstream is often a TLS connection (mTLS to the
// peer proxy) not yet handshaken. The race handshakes it first, then sees the greeting that comes
// through it (server first), or the client's bytes (client first); nothing is lost either way.
func TestDetectUpstreamTLSUpstream(t *testing.T) {
	raceLeakCheck(t)
	srvConf, pool := selfSignedTLS(t, "peer.test")
	t.Run("HTTP/2 server preface is not a greeting", func(t *testing.T) {
		cli, cp := raceTCPPair(t)
		up, srv := raceTCPPair(t)
		ts := tls.Server(srv, srvConf)
		defer ts.Close()
		settings := []byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100}
		go func() {
			if ts.Handshake() == nil {
				ts.Write(settings)
			}
		}()
		preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
		time.AfterFunc(100*time.Millisecond, func() { io.WriteString(cli, preface) })
		tc := tls.Client(up, &tls.Config{RootCAs: pool, ServerName: "peer.test"})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, c, u, err := (&detect.Detector{}).DetectUpstream(ctx, cp, tc)
		require.NoError(t, err)
		assert.Equal(t, detect.HTTP2, res.Protocol)
		require.NoError(t, u.SetReadDeadline(time.Now().Add(10*time.Second)))
		got := make([]byte, len(settings))
		_, err = io.ReadFull(u, got)
		require.NoError(t, err)
		assert.Equal(t, settings, got, "the server's frame, read ahead for the check, is replayed")
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		g := make([]byte, len(preface))
		_, err = io.ReadFull(c, g)
		require.NoError(t, err)
		assert.Equal(t, preface, string(g))
	})
	for _, serverFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("serverFirst=%v", serverFirst), func(t *testing.T) {
			cli, cp := raceTCPPair(t)
			up, srv := raceTCPPair(t)
			ts := tls.Server(srv, srvConf)
			defer ts.Close()
			go func() {
				if ts.Handshake() != nil {
					return
				}
				if serverFirst {
					io.WriteString(ts, "220 through mTLS\r\n")
				}
			}()
			tc := tls.Client(up, &tls.Config{RootCAs: pool, ServerName: "peer.test"})
			if !serverFirst {
				go io.WriteString(cli, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, c, u, err := (&detect.Detector{}).DetectUpstream(ctx, cp, tc)
			require.NoError(t, err)
			if serverFirst {
				require.True(t, tc.ConnectionState().HandshakeComplete)
				assert.Equal(t, detect.ReasonServerFirst, res.Reason)
				require.NoError(t, u.SetReadDeadline(time.Now().Add(10*time.Second)))
				g := make([]byte, 18)
				_, err = io.ReadFull(u, g)
				require.NoError(t, err)
				assert.Equal(t, "220 through mTLS\r\n", string(g))
			} else {
				assert.Equal(t, detect.HTTP1, res.Protocol)
				require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
				g := make([]byte, 5)
				_, err = io.ReadFull(c, g)
				require.NoError(t, err)
				assert.Equal(t, "GET /", string(g))
			}
		})
	}
}
