package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/websocket"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/examples/sidecar/internal/testserver"
	"github.com/sniffsplice/sniff/metrics"
	promcollector "github.com/sniffsplice/sniff/metrics/prometheus"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/transparent"
)

// lineEcho answers each line with "echo: line" and returns its address.
func lineEcho(tb testing.TB) netip.AddrPort {
	tb.Helper()
	return testserver.Serve(tb, func(c net.Conn) {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintf(c, "echo: %s from %s\n", sc.Text(), c.RemoteAddr().(*net.TCPAddr).IP)
		}
	})
}

// httpBackend serves srv on loopback until the test ends (waiting for its
// Serve goroutine) and returns its address.
func httpBackend(tb testing.TB, srv *http.Server) netip.AddrPort {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	tb.Cleanup(func() { srv.Close(); <-done })
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// events collects a Proxy's events.
type events struct {
	mu  sync.Mutex
	evs []Event
}

func (e *events) add(ev Event) { e.mu.Lock(); e.evs = append(e.evs, ev); e.mu.Unlock() }

func (e *events) wait(t *testing.T, n int) []Event {
	t.Helper()
	require.Eventually(t, func() bool { e.mu.Lock(); defer e.mu.Unlock(); return len(e.evs) >= n }, 10*time.Second, 5*time.Millisecond)
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.evs...)
}

func roundTrip(t *testing.T, addr, line string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%s\n", line)
	got, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	return got
}

func policy(t *testing.T, p opaque.Policy) *opaque.Resolver {
	tab, err := opaque.Compile(p)
	require.NoError(t, err)
	return opaque.NewResolver(tab)
}

// TestPaths drives one connection down each outbound path: skip (plain TCP
// to the destination, no peer), opaque, declared and detect.
func TestPaths(t *testing.T) {
	dst := lineEcho(t)
	ca := mtlstest.MustNew("paths.test")
	srcA, srcB := ca.Source("/a"), ca.Source("/b")
	var evB events
	pB := &Proxy{TLS: &mtls.Config{SVID: srcB, Bundle: srcB}, OnEvent: evB.add}
	sB, err := Start(context.Background(), pB, Listeners{Inbound: "127.0.0.1:0"})
	require.NoError(t, err)
	defer sB.Close()

	for _, tc := range []struct {
		name  string
		pol   opaque.Policy
		path  Path
		proto detect.Protocol
	}{
		{"skip", opaque.Policy{Workload: opaque.Layer{SkipOutboundPorts: ptr(opaque.NewPortSet(dst.Port()))}}, PathSkip, detect.Unknown},
		{"opaque", opaque.Policy{Workload: opaque.Layer{OpaquePorts: ptr(opaque.NewPortSet(dst.Port()))}}, PathOpaque, detect.Unknown},
		{"declared", opaque.Policy{Ports: []opaque.PortPolicy{{Direction: opaque.Outbound, Port: dst.Port(),
			Decision: opaque.Decision{Action: opaque.ActionDeclared, Protocol: detect.TLS}}}}, PathDeclared, detect.TLS},
		{"detect", opaque.Policy{}, PathDetect, detect.Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var evA events
			pA := &Proxy{
				TLS: &mtls.Config{SVID: srcA, Bundle: srcA}, Policy: policy(t, tc.pol), OnEvent: evA.add,
				Peers: func(netip.AddrPort) (Peer, error) { return Peer{Addr: sB.InboundAddr.String(), ID: ca.ID("/b")}, nil },
			}
			sA, err := Start(context.Background(), pA, Listeners{Forwards: []Forward{{Listen: "127.0.0.1:0", Dst: dst}}})
			require.NoError(t, err)
			defer sA.Close()
			require.Equal(t, "echo: ping from 127.0.0.1\n", roundTrip(t, sA.ForwardAddrs[0].String(), "ping"))
			ev := evA.wait(t, 1)[0]
			require.NoError(t, ev.Err)
			require.Equal(t, tc.path, ev.Path)
			require.Equal(t, tc.proto, ev.Protocol)
			require.Equal(t, int64(5), ev.ClientBytes)
			require.Equal(t, int64(26), ev.ServerBytes)
			if tc.path == PathSkip {
				require.True(t, ev.PeerID.IsZero(), "skip: no mTLS")
			} else {
				require.Equal(t, ca.ID("/b"), ev.PeerID)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestDstErrors(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	_, err := transparent.OriginalDst(a)
	require.ErrorIs(t, err, transparent.ErrNoOriginalDst)

	want := netip.MustParseAddrPort("127.0.0.1:5432")
	got, err := Fixed(want)(a)
	require.NoError(t, err)
	require.Equal(t, want, got)

	// A connection whose destination is the listener itself is refused.
	ca := mtlstest.MustNew("loop.test")
	src := ca.Source("/a")
	var ev events
	p := &Proxy{TLS: &mtls.Config{SVID: src, Bundle: src}, OnEvent: ev.add}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	self := l.Addr().(*net.TCPAddr).AddrPort()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.ServeOutbound(ctx, l, Fixed(self)) }()
	c, err := net.Dial("tcp", self.String())
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(c)
	require.NoError(t, err)
	c.Close()
	require.ErrorIs(t, ev.wait(t, 1)[0].Err, ErrLoop)
	cancel()
	require.NoError(t, <-done)

	// No TLS identity: refused at start.
	_, err = Start(context.Background(), &Proxy{}, Listeners{Inbound: "127.0.0.1:0"})
	require.ErrorContains(t, err, "Proxy.TLS is required")
}

// TestInboundRefusesPlaintext: the inbound port speaks only mutual TLS.
func TestInboundRefusesPlaintext(t *testing.T) {
	ca := mtlstest.MustNew("in.test")
	src := ca.Source("/b")
	var ev events
	s, err := Start(context.Background(), &Proxy{TLS: &mtls.Config{SVID: src, Bundle: src}, OnEvent: ev.add}, Listeners{Inbound: "127.0.0.1:0"})
	require.NoError(t, err)
	defer s.Close()
	c, err := net.Dial("tcp", s.InboundAddr.String())
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(c)
	c.Close()
	require.NotContains(t, string(b), "200")
	require.ErrorIs(t, ev.wait(t, 1)[0].Err, ErrNotMeshed)
}

// TestInboundSilentClient: a client of the inbound port that sends no
// ClientHello within DialTimeout is closed and reported as not meshed, with
// the wait's timeout in its error.
func TestInboundSilentClient(t *testing.T) {
	ca := mtlstest.MustNew("in.test")
	src := ca.Source("/b")
	var ev events
	const timeout = 200 * time.Millisecond
	s, err := Start(context.Background(), &Proxy{TLS: &mtls.Config{SVID: src, Bundle: src}, OnEvent: ev.add, DialTimeout: timeout},
		Listeners{Inbound: "127.0.0.1:0"})
	require.NoError(t, err)
	defer s.Close()
	c, err := net.Dial("tcp", s.InboundAddr.String())
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	n, err := c.Read(make([]byte, 1))
	require.Zero(t, n)
	require.Error(t, err, "the silent client is closed")
	require.GreaterOrEqual(t, time.Since(start), timeout*9/10, "not before its wait ends")
	e := ev.wait(t, 1)[0]
	require.ErrorIs(t, e.Err, ErrNotMeshed)
	require.ErrorIs(t, e.Err, detect.ErrWaitTimeout)
	require.Equal(t, PathHeader, e.Path)
	require.Equal(t, opaque.Inbound, e.Direction)
}

// TestHandleLocal: an unmeshed client of a local port (as the inbound
// redirect delivers it) gets detection and, for HTTP, the HTTP layer; a
// forged l5d-client-id never reaches the application.
func TestHandleLocal(t *testing.T) {
	var seen sync.Map
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store("id", r.Header.Get(ClientIDHeader))
		io.WriteString(w, "local")
	})}
	port := httpBackend(t, srv).Port()

	ca := mtlstest.MustNew("local.test")
	src := ca.Source("/b")
	reg := metrics.New(metrics.Config{})
	var ev events
	p := &Proxy{TLS: &mtls.Config{SVID: src, Bundle: src}, OnEvent: ev.add, Metrics: reg}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer front.Close()
	go func() {
		c, err := front.Accept()
		if err == nil {
			p.HandleLocal(context.Background(), c, port)
		}
	}()
	c, err := net.Dial("tcp", front.Addr().String())
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: app\r\nl5d-client-id: spiffe://evil/forged\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	c.Close()
	require.Equal(t, "local", string(body))
	id, _ := seen.Load("id")
	require.Equal(t, "", id, "forged identity removed")
	e := ev.wait(t, 1)[0]
	require.Equal(t, PathDetect, e.Path)
	require.Equal(t, detect.HTTP1, e.Protocol)
	require.Equal(t, uint64(1), responseCount(reg.Snapshot(), opaque.Inbound, 200, ""))
	p.CloseIdleConnections()

	// The HTTP metrics pass Prometheus' linter.
	problems, err := promtestutil.CollectAndLint(promcollector.NewCollector(reg, promcollector.Options{}))
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestAdminReady(t *testing.T) {
	ca := mtlstest.MustNew("admin.test")
	src := ca.Source("/b")
	s, err := Start(context.Background(), &Proxy{TLS: &mtls.Config{SVID: src, Bundle: src}}, Listeners{Admin: "127.0.0.1:0"})
	require.NoError(t, err)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.AdminAddr.String() + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/ready")
	require.Equal(t, 200, code)
	require.Equal(t, "ready\n", body)
	code, _ = get("/metrics")
	require.Equal(t, 404, code, "no metrics handler given")
	s.ready.Store(false)
	code, body = get("/ready")
	require.Equal(t, 503, code)
	require.True(t, strings.HasPrefix(body, "not ready"))
	require.NoError(t, s.Close())
	_, err = net.Dial("tcp", s.AdminAddr.String())
	require.True(t, err != nil && !errors.Is(err, context.Canceled))
}

// TestCloseWithOpenUpgrade: closing the sidecars ends an open WebSocket
// (hijacked connections are not left behind; goleak checks the rest).
func TestCloseWithOpenUpgrade(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }))
	backend := httpBackend(t, &http.Server{Handler: mux})

	ca := mtlstest.MustNew("ws.test")
	srcA, srcB := ca.Source("/a"), ca.Source("/b")
	sB, err := Start(context.Background(), &Proxy{TLS: &mtls.Config{SVID: srcB, Bundle: srcB}}, Listeners{Inbound: "127.0.0.1:0"})
	require.NoError(t, err)
	sA, err := Start(context.Background(), &Proxy{TLS: &mtls.Config{SVID: srcA, Bundle: srcA},
		Peers: func(netip.AddrPort) (Peer, error) { return Peer{Addr: sB.InboundAddr.String()}, nil }},
		Listeners{Forwards: []Forward{{Listen: "127.0.0.1:0", Dst: backend}}})
	require.NoError(t, err)
	addr := sA.ForwardAddrs[0].String()
	ws, err := websocket.Dial("ws://"+addr+"/ws", "", "http://"+addr)
	require.NoError(t, err)
	defer ws.Close()
	_, err = ws.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(ws, buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf))

	closed := make(chan struct{})
	go func() { sA.Close(); sB.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("sidecars did not close with a WebSocket open")
	}
	ws.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = ws.Read(buf)
	require.Error(t, err, "the tunnel ended with the sidecars")
}

// TestPeerDownHTTP: with the peer sidecar unreachable, an HTTP client gets a
// 502 from sidecar A, not a silent close.
func TestPeerDownHTTP(t *testing.T) {
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	peerAddr := gone.Addr().String()
	gone.Close()
	ca := mtlstest.MustNew("down.test")
	src := ca.Source("/a")
	var ev events
	sA, err := Start(context.Background(), &Proxy{TLS: &mtls.Config{SVID: src, Bundle: src}, OnEvent: ev.add,
		Peers: func(netip.AddrPort) (Peer, error) { return Peer{Addr: peerAddr}, nil }},
		Listeners{Forwards: []Forward{{Listen: "127.0.0.1:0", Dst: netip.MustParseAddrPort("127.0.0.1:9")}}})
	require.NoError(t, err)
	defer sA.Close()
	c, err := net.Dial("tcp", sA.ForwardAddrs[0].String())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	c.Close()
	e := ev.wait(t, 1)[0]
	require.Error(t, e.Err)
	require.Equal(t, detect.HTTP1, e.Protocol)
}
