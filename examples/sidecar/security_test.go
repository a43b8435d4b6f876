package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	"github.com/sniffsplice/sniff/examples/sidecar/internal/testserver"
	"github.com/sniffsplice/sniff/examples/sidecar/proxy"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/spiffe"
)

// Issue 16, played from outside as an attacker would. The rule: the
// application sees exactly the identity the inbound sidecar verified in
// l5d-client-id, or no l5d-client-id at all, never one a client wrote; on
// ports declared opaque (and under -no-http) no identity header is injected
// or stripped. Each test names the refusal it expects.

const forgedID = "spiffe://test.sidecar/ns/default/sa/admin"

// meshCA is a throw-away CA with the client and server sidecars' SVIDs as
// PEM files (the flags that load them), for tests that also need the CA to
// make an attacker's certificates.
type meshCA struct {
	ca             *mtlstest.CA
	client, server []string
}

func newMeshCA(t testing.TB) meshCA {
	t.Helper()
	ca := mtlstest.MustNew("test.sidecar")
	dir := t.TempDir()
	flags := func(prefix, id string) []string {
		f, err := mtlstest.WritePEM(dir, prefix, ca.Issue(id), ca.Bundle())
		require.NoError(t, err)
		return []string{"-cert", f.Cert, "-key", f.Key, "-bundle", f.Bundle}
	}
	return meshCA{ca: ca, client: flags("client", clientID), server: flags("server", serverID)}
}

// pair is the package's pair with this CA: it returns sidecar A's forward
// listener for dst, and both sidecars. srvExtra go to B only, extra to both.
func (m meshCA) pair(t testing.TB, dst netip.AddrPort, srvExtra []string, extra ...string) (string, *proxy.Sidecar, *proxy.Sidecar) {
	t.Helper()
	srv, _ := startSidecar(t, slices.Concat(m.server, []string{"-inbound", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-allow", clientID}, srvExtra, extra)...)
	cli, _ := startSidecar(t, slices.Concat(m.client, []string{"-forward", "127.0.0.1:0=" + dst.String(), "-admin", "127.0.0.1:0",
		"-peer", srv.InboundAddr.String(), "-peer-id", serverID}, extra)...)
	return cli.ForwardAddrs[0].String(), cli, srv
}

// dialInbound is an attacker holding svid: mutual TLS to a sidecar's inbound
// address, offering transport.l5d.io/v1, then the transport header h. config
// may change the TLS client's configuration.
func dialInbound(t testing.TB, addr string, svid *spiffe.SVID, h opaque.Header, config func(*tls.Config)) (*tls.Conn, error) {
	t.Helper()
	cfg := &tls.Config{
		InsecureSkipVerify: true, // the attacker does not care who the server is
		NextProtos:         []string{opaque.ALPN},
		MinVersion:         tls.VersionTLS12,
	}
	if svid != nil {
		cert := tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
		for _, c := range svid.Certificates {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if config != nil {
		config(cfg)
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := (&opaque.HeaderCodec{}).Write(c, h); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// idRecorder is an HTTP/1.1 and h2c application that records the
// l5d-client-id values and a few other headers of every request it gets,
// and answers with the l5d-client-id values it saw. A CONNECT is answered
// 200 and the tunnel echoes.
type idRecorder struct {
	addr netip.AddrPort
	mu   sync.Mutex
	reqs []http.Header
	wg   sync.WaitGroup
}

func newIDRecorder(t testing.TB) *idRecorder {
	t.Helper()
	rec := &idRecorder{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Header.Clone())
		rec.mu.Unlock()
		if r.Method == http.MethodConnect {
			w.WriteHeader(http.StatusOK)
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			brw.Flush()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			io.Copy(c, brw) // echo, bytes read ahead first
			return
		}
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ids=%q", r.Header.Values(proxy.ClientIDHeader))
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos, MaxHeaderBytes: 1 << 20}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rec.wg.Add(1)
	go func() { defer rec.wg.Done(); srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); rec.wg.Wait() })
	rec.addr = l.Addr().(*net.TCPAddr).AddrPort()
	return rec
}

// ids returns the l5d-client-id values of every request so far.
func (rec *idRecorder) ids() [][]string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out [][]string
	for _, h := range rec.reqs {
		out = append(out, h.Values(proxy.ClientIDHeader))
	}
	return out
}

// requireNeverForged fails when the application saw forgedID.
func (rec *idRecorder) requireNeverForged(t *testing.T) {
	t.Helper()
	for _, ids := range rec.ids() {
		require.NotContains(t, ids, forgedID, "the application saw the client's forged l5d-client-id")
	}
}

// readStatus reads one HTTP/1 response from br and returns its status line.
func readStatus(t *testing.T, br *bufio.Reader) (string, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err, "an HTTP answer, not a silent close")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.Status, string(body)
}

func forgedRequest(target string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: app\r\nL5d-Client-Id: " + forgedID + "\r\nConnection: close\r\n\r\n"
}

// longTarget is a request target that does not fit the detection buffer
// (detect.DefaultMaxPeek, 16 KiB), which the application accepts (1 MiB).
var longTarget = "/" + strings.Repeat("a", 20<<10)

// TestForgedClientIDThroughSidecarA: a client of sidecar A writes its own
// l5d-client-id in requests that detection cannot finish. Before issue 16
// they went opaque and the application read the forged header.
func TestForgedClientIDThroughSidecarA(t *testing.T) {
	m := newMeshCA(t)
	rec := newIDRecorder(t)
	addr, cli, _ := m.pair(t, rec.addr, nil, "-detect-timeout", "300ms")
	for _, tc := range []struct {
		name   string
		write  func(c net.Conn)
		status string
	}{
		{"request line longer than the detection buffer: 431", func(c net.Conn) {
			io.WriteString(c, forgedRequest(longTarget))
		}, "431 Request Header Fields Too Large"},
		{"request line slower than the detection timeout: 408", func(c net.Conn) {
			io.WriteString(c, "GET /sl")
			time.Sleep(600 * time.Millisecond)
			io.WriteString(c, forgedRequest("ow")[len("GET "):])
		}, "408 Request Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			tc.write(c)
			status, _ := readStatus(t, bufio.NewReader(c))
			require.Equal(t, tc.status, status)
			rec.requireNeverForged(t)
		})
	}
	require.Empty(t, rec.ids(), "no refused request reached the application")
	// Counted on A as net/http's own refusals are: failures, no authority.
	eventually(t, func() error {
		a := cli.Proxy.Metrics.Snapshot()
		for _, s := range []int{431, 408} {
			if got := responseCount(a, opaque.Outbound, s, ""); got != 1 {
				return fmt.Errorf("outbound %d responses %d, want 1", s, got)
			}
		}
		return nil
	})
	// The control: an ordinary request gets the verified identity.
	code, body := get(t, "http://"+addr+"/ok")
	require.Equal(t, 200, code)
	require.Equal(t, fmt.Sprintf("ids=%q", []string{clientID}), body)
}

// TestForgedClientIDByAuthorizedPeer: an attacker holding a certificate the
// server sidecar accepts talks to B's inbound port directly and writes its
// own transport header. Before issue 16, a header with no session protocol
// carried its HTTP to the application untouched.
func TestForgedClientIDByAuthorizedPeer(t *testing.T) {
	m := newMeshCA(t)
	rec := newIDRecorder(t)
	_, _, srv := m.pair(t, rec.addr, nil)
	peer := m.ca.Issue(clientID)
	inbound := srv.InboundAddr.String()
	port := rec.addr.Port()
	verified := fmt.Sprintf("ids=%q", []string{clientID})

	t.Run("no session protocol, HTTP/1: B serves it and sets the verified identity", func(t *testing.T) {
		c, err := dialInbound(t, inbound, peer, opaque.Header{Port: port}, nil)
		require.NoError(t, err)
		defer c.Close()
		io.WriteString(c, forgedRequest("/h1"))
		status, body := readStatus(t, bufio.NewReader(c))
		require.Equal(t, "200 OK", status)
		require.Equal(t, verified, body)
	})
	t.Run("no session protocol, h2c: B serves it and sets the verified identity", func(t *testing.T) {
		c, err := dialInbound(t, inbound, peer, opaque.Header{Port: port}, nil)
		require.NoError(t, err)
		defer c.Close()
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(context.Context, string, string, *tls.Config) (net.Conn, error) {
			return c, nil
		}}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodGet, "http://app/h2", nil)
		require.NoError(t, err)
		req.Header.Set(proxy.ClientIDHeader, forgedID)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "HTTP/2.0", resp.Proto)
		require.Equal(t, verified, string(body))
	})
	t.Run("no session protocol, request line longer than the detection buffer: 431 from B", func(t *testing.T) {
		c, err := dialInbound(t, inbound, peer, opaque.Header{Port: port}, nil)
		require.NoError(t, err)
		defer c.Close()
		io.WriteString(c, forgedRequest(longTarget))
		status, _ := readStatus(t, bufio.NewReader(c))
		require.Equal(t, "431 Request Header Fields Too Large", status)
	})
	t.Run("HTTP/1 announced: the HTTP layer replaces the forged identity", func(t *testing.T) {
		c, err := dialInbound(t, inbound, peer, opaque.Header{Port: port, SessionProtocol: opaque.SessionHTTP1}, nil)
		require.NoError(t, err)
		defer c.Close()
		io.WriteString(c, forgedRequest("/announced"))
		status, body := readStatus(t, bufio.NewReader(c))
		require.Equal(t, "200 OK", status)
		require.Equal(t, verified, body)
	})
	rec.requireNeverForged(t)
	require.Len(t, rec.ids(), 3, "h1, h2 and announced reached the application")
	eventually(t, func() error {
		if got := responseCount(srv.Proxy.Metrics.Snapshot(), opaque.Inbound, 431, ""); got != 1 {
			return fmt.Errorf("inbound 431 responses %d, want 1", got)
		}
		return nil
	})
}

// TestUndecidedNotDelayedTwice: bytes that are not HTTP but leave detection
// undecided (a partial TLS record) wait for sidecar A's detection timeout and
// go opaque; sidecar B, which judges them again, must not make them wait a
// second full timeout (10 s by default) before they reach the application.
func TestUndecidedNotDelayedTwice(t *testing.T) {
	m := newMeshCA(t)
	app := testserver.Serve(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.Copy(c, c)
	})
	srv, _ := startSidecar(t, slices.Concat(m.server, []string{"-inbound", "127.0.0.1:0", "-allow", clientID})...)
	cli, _ := startSidecar(t, slices.Concat(m.client, []string{"-forward", "127.0.0.1:0=" + app.String(),
		"-peer", srv.InboundAddr.String(), "-peer-id", serverID, "-detect-timeout", "300ms"})...)
	c, err := net.Dial("tcp", cli.ForwardAddrs[0].String())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	io.WriteString(c, "\x16\x03\x01\x00") // a TLS record header, cut short
	got := make([]byte, 4)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, "\x16\x03\x01\x00", string(got))
	took := time.Since(start)
	t.Logf("echoed after %v (A's detection timeout 300ms, B's default 10s)", took)
	require.Less(t, took, 3*time.Second, "B waited a second detection timeout")
}

// TestDeclaredOpaquePortNoIdentity pins what the README's Security section
// says of ports declared opaque: the sidecars carry the bytes and neither
// inject nor strip l5d-client-id; an application there must not trust it.
func TestDeclaredOpaquePortNoIdentity(t *testing.T) {
	m := newMeshCA(t)
	rec := newIDRecorder(t)
	addr, _, _ := m.pair(t, rec.addr, nil, "-opaque-ports", fmt.Sprint(rec.addr.Port()))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, forgedRequest("/opaque"))
	status, body := readStatus(t, bufio.NewReader(c))
	require.Equal(t, "200 OK", status)
	require.Equal(t, fmt.Sprintf("ids=%q", []string{forgedID}), body, "bytes carried untouched: nothing injected, nothing stripped")
}

// TestTransportHeaderNamesProxyPort: an authorized peer names the server
// sidecar's own listeners in the transport header. Before issue 16, B
// forwarded it to 127.0.0.1:<admin> and served its /metrics to the peer.
func TestTransportHeaderNamesProxyPort(t *testing.T) {
	m := newMeshCA(t)
	app := echoServer(t)
	srv, _ := startSidecar(t, slices.Concat(m.server, []string{"-inbound", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-outbound", "127.0.0.1:0", "-forward", "127.0.0.1:0=" + app.String(), "-allow", clientID})...)
	peer := m.ca.Issue(clientID)
	port := func(a net.Addr) uint16 { return uint16(a.(*net.TCPAddr).Port) }
	for _, tc := range []struct {
		name string
		port uint16
	}{
		{"admin", port(srv.AdminAddr)},
		{"inbound", port(srv.InboundAddr)},
		{"outbound", port(srv.OutboundAddr)},
		{"forward", port(srv.ForwardAddrs[0])},
	} {
		t.Run(tc.name+" listener: refused", func(t *testing.T) {
			c, err := dialInbound(t, srv.InboundAddr.String(), peer, opaque.Header{Port: tc.port}, nil)
			require.NoError(t, err)
			defer c.Close()
			io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nline\n")
			got, err := io.ReadAll(c)
			require.Empty(t, string(got), "nothing from the proxy's own listener")
			require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "closed, not left hanging")
		})
	}
	eventually(t, func() error {
		s := srv.Proxy.Metrics.Snapshot()
		rejected := s.Value("transport_header_rejected_total", "reason", "proxy_port")
		read := s.Value("transport_header_read_total")
		if rejected != 4 || read != 0 {
			return fmt.Errorf("headers rejected for proxy_port %v, read %v; want 4, 0", rejected, read)
		}
		return nil
	})
	// The control: the application's own port is served.
	c, err := dialInbound(t, srv.InboundAddr.String(), peer, opaque.Header{Port: app.Port()}, nil)
	require.NoError(t, err)
	defer c.Close()
	io.WriteString(c, "ping\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "echo: ping\n", line)
}

// TestAdminLimits: idle keep-alive connections to the admin listener are
// closed, and at most AdminMaxConns are served at once. Before issue 16
// an idle one stayed open for good and there was no cap.
func TestAdminLimits(t *testing.T) {
	ca := mtlstest.MustNew("test.sidecar")
	src := ca.Source(serverID)
	const maxConns, idle = 4, 500 * time.Millisecond
	s, err := proxy.Start(context.Background(), &proxy.Proxy{TLS: &mtls.Config{SVID: src, Bundle: src}}, proxy.Listeners{
		Admin: "127.0.0.1:0", AdminMaxConns: maxConns, AdminIdleTimeout: idle,
	})
	require.NoError(t, err)
	defer s.Close()
	live := func(c net.Conn, br *bufio.Reader) error {
		if _, err := io.WriteString(c, "GET /live HTTP/1.1\r\nHost: admin\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	var conns []net.Conn
	var readers []*bufio.Reader
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range maxConns {
		c, err := net.Dial("tcp", s.AdminAddr.String())
		require.NoError(t, err)
		conns = append(conns, c)
		readers = append(readers, bufio.NewReader(c))
		require.NoError(t, live(c, readers[len(readers)-1]))
	}
	// One over the cap waits in the backlog while the others are open.
	extra, err := net.Dial("tcp", s.AdminAddr.String())
	require.NoError(t, err)
	defer extra.Close()
	io.WriteString(extra, "GET /live HTTP/1.1\r\nHost: admin\r\n\r\n")
	extra.SetReadDeadline(time.Now().Add(idle / 2))
	_, err = extra.Read(make([]byte, 1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "connection over the cap not served while %d are open", maxConns)
	// The idle ones are closed by the server after the idle timeout...
	start := time.Now()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := readers[i].ReadByte()
		require.ErrorIs(t, err, io.EOF, "idle keep-alive connection %d closed by the server", i)
	}
	require.Less(t, time.Since(start), 5*time.Second)
	// ...and then the waiting one is served.
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(extra), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
}

// TestAdminBindsPodIP: the manifest binds the admin listener to the pod's
// IP, not to every address.
func TestAdminBindsPodIP(t *testing.T) {
	b, err := os.ReadFile("k8s/deployment.yaml")
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	args := manifestList(t, lines, "- name: sidecar", "args:")
	require.Contains(t, args, "-admin=[$(POD_IP)]:4191")
	require.Contains(t, string(b), "fieldPath: status.podIP")
	for _, a := range args {
		require.NotContains(t, a, "-admin=0.0.0.0", "admin on every address")
	}
}

// TestClientBodyError400: a request whose chunked body is malformed is the
// client's error: 400, counted as such on both sidecars, never a 502 (an
// upstream failure), which is what it was before issue 16.
func TestClientBodyError400(t *testing.T) {
	m := newMeshCA(t)
	rec := newIDRecorder(t)
	addr, cli, srv := m.pair(t, rec.addr, nil)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
	status, _ := readStatus(t, bufio.NewReader(c))
	require.Equal(t, "400 Bad Request", status)
	eventually(t, func() error {
		a, b := snapshots(cli, srv)
		if got := responseCount(a, opaque.Outbound, 400, ""); got != 1 {
			return fmt.Errorf("outbound 400 responses %d, want 1", got)
		}
		for _, s := range []metrics.Snapshot{a, b} {
			if n := s.Value("response_total", "status_code", "502"); n != 0 {
				return fmt.Errorf("%v 502 responses were counted", n)
			}
		}
		return nil
	})
}

// TestConnectScrubbed: a CONNECT goes through the same header rewrite as
// every other request: the application (an HTTP proxy) gets the verified
// identity and not the client's, the end-to-end headers, and none of the
// hop-by-hop ones. Before issue 16 it got the Host header alone.
func TestConnectScrubbed(t *testing.T) {
	m := newMeshCA(t)
	rec := newIDRecorder(t)
	addr, _, _ := m.pair(t, rec.addr, nil)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\nL5d-Client-Id: "+forgedID+
		"\r\nX-Probe: kept\r\nConnection: X-Hop\r\nX-Hop: dropped\r\nKeep-Alive: timeout=5\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	io.WriteString(c, "through the tunnel\n")
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "through the tunnel\n", line)

	rec.mu.Lock()
	require.Len(t, rec.reqs, 1)
	h := rec.reqs[0]
	rec.mu.Unlock()
	require.Equal(t, []string{clientID}, h.Values(proxy.ClientIDHeader), "the verified identity, not the client's")
	require.Equal(t, "kept", h.Get("X-Probe"))
	require.Empty(t, h.Values("X-Hop"), "named in Connection: hop-by-hop")
	require.Empty(t, h.Values("Keep-Alive"))
}

// TestRefusedCertificates: each certificate on the issue's list is refused
// by the server sidecar's mutual TLS, for its own reason, and nothing
// reaches the application.
func TestRefusedCertificates(t *testing.T) {
	ca := mtlstest.MustNew("test.sidecar")
	otherCA := mtlstest.MustNew("test.sidecar") // same name, another key
	otherTD := mtlstest.MustNew("other.test")
	var appSaw atomic.Int32
	app := testserver.Serve(t, func(c net.Conn) {
		appSaw.Add(1)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintf(c, "echo: %s\n", sc.Text())
		}
	})

	events := make(chan proxy.Event, 16)
	handshakes := make(chan mtls.HandshakeEvent, 16)
	src := ca.Source(serverID)
	p := &proxy.Proxy{
		TLS: &mtls.Config{SVID: src, Bundle: src, Authorize: mtls.AuthorizeOneOf(ca.ID(clientID)),
			OnHandshake: func(ev mtls.HandshakeEvent) { send(handshakes, ev) }},
		OnEvent: func(ev proxy.Event) { send(events, ev) },
	}
	s, err := proxy.Start(context.Background(), p, proxy.Listeners{Inbound: "127.0.0.1:0"})
	require.NoError(t, err)
	defer s.Close()
	h := opaque.Header{Port: app.Port()}
	tls12 := func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }
	noALPN := func(c *tls.Config) { c.NextProtos = nil }

	for _, tc := range []struct {
		name   string
		svid   *spiffe.SVID
		config func(*tls.Config)
		want   error // what B's event error matches
	}{
		{"other CA: untrusted", otherCA.Issue(clientID), nil, mtls.ErrUntrusted},
		{"other trust domain: no bundle", otherTD.Issue("spiffe://other.test/ns/default/sa/client"), nil, mtls.ErrUnknownTrustDomain},
		{"wrong ID: unauthorized", ca.Issue("/ns/default/sa/intruder"), nil, mtls.ErrUnauthorized},
		{"expired", ca.Issue(clientID, mtlstest.Expired()), nil, mtls.ErrExpired},
		{"not yet valid", ca.Issue(clientID, mtlstest.NotYetValid()), nil, mtls.ErrNotYetValid},
		{"no URI SAN: bad certificate", ca.Issue(clientID, mtlstest.WithoutURI()), nil, mtls.ErrBadCertificate},
		{"two URI SANs: bad certificate", ca.Issue(clientID, mtlstest.WithExtraURI("spiffe://test.sidecar/ns/default/sa/server")), nil, mtls.ErrBadCertificate},
		{"CA as leaf: bad certificate", ca.Issue(clientID, mtlstest.AsCA()), nil, mtls.ErrBadCertificate},
		{"no certificate", nil, nil, mtls.ErrNoPeerCertificate},
		{"TLS 1.2: not TLS 1.3", ca.Issue(clientID), tls12, mtls.ErrNotTLS13},
		{"no transport.l5d.io/v1 ALPN: not meshed", ca.Issue(clientID), noALPN, proxy.ErrNotMeshed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialInbound(t, s.InboundAddr.String(), tc.svid, h, tc.config)
			if err == nil {
				// TLS 1.3: the client's handshake ends before the server has
				// checked its certificate; the refusal comes as an alert.
				io.WriteString(c, "ping\n")
				var got []byte
				got, err = io.ReadAll(c)
				c.Close()
				require.Empty(t, string(got), "nothing from the application")
			}
			ev := <-events
			require.ErrorIs(t, ev.Err, proxy.ErrNotMeshed, "%v", ev.Err)
			if errors.Is(tc.want, mtls.ErrNotTLS13) {
				// crypto/tls refuses the hello itself; mtls reports why.
				hs := <-handshakes
				require.ErrorIs(t, hs.Err, mtls.ErrNotTLS13)
				require.Equal(t, mtls.ReasonProtocol, hs.Reason)
			} else {
				require.ErrorIs(t, ev.Err, tc.want, "%v", ev.Err)
				drain(handshakes)
			}
		})
	}
	t.Run("plaintext: not meshed", func(t *testing.T) {
		c, err := net.Dial("tcp", s.InboundAddr.String())
		require.NoError(t, err)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		b, _ := opaque.Header{Port: app.Port()}.AppendBinary(nil)
		c.Write(append(b, "ping\n"...))
		got, _ := io.ReadAll(c)
		c.Close()
		require.NotContains(t, string(got), "echo")
		ev := <-events
		require.ErrorIs(t, ev.Err, proxy.ErrNotMeshed)
		var rh tls.RecordHeaderError
		require.ErrorAs(t, ev.Err, &rh, "%v", ev.Err)
	})
	require.Zero(t, appSaw.Load(), "no refused client reached the application")

	// The control: the right certificate gets through.
	c, err := dialInbound(t, s.InboundAddr.String(), ca.Issue(clientID), h, nil)
	require.NoError(t, err)
	io.WriteString(c, "ping\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	require.NoError(t, err)
	require.Equal(t, "echo: ping\n", line)
	ev := <-events
	require.Equal(t, clientID, ev.PeerID.String())
}

func drain[T any](ch chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// send sends v on ch unless ch is full (a hook must never block).
func send[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}
