package proxyproto_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/sniffsplice/sniff/proxyproto"
	"github.com/sniffsplice/sniff/splice"
)

// lockedBuffer collects a child process's output.
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

// startHAProxy runs haproxy in the foreground with cfg until the test ends,
// once it listens on every port.
func startHAProxy(t *testing.T, cfg string, ports ...int) {
	t.Helper()
	bin := needProgram(t, "haproxy", "haproxy")
	f := filepath.Join(t.TempDir(), "haproxy.cfg")
	require.NoError(t, os.WriteFile(f, []byte(cfg), 0o600))
	var out lockedBuffer
	cmd := exec.Command(bin, "-db", "-f", f)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	for _, p := range ports {
		waitListening(t, p, func() string { return "haproxy: " + out.String() })
	}
}

// chunkObserver sorts the chunks a splice.Joiner reports by size: with
// SpliceThreshold and BufferSize at their 1 KiB minimum, a chunk over 1 KiB
// can only be one splice(2) (the bulk path of a TCP source, which an
// io.LimitedReader bounds by the queued bytes); no buffer of the joiner
// holds more.
type chunkObserver struct {
	total, spliced [2]atomic.Int64
}

const joinerBuf = 1024

func (o *chunkObserver) Transferred(d splice.Flow, n int64) {
	o.total[d].Add(n)
	if n > joinerBuf {
		o.spliced[d].Add(n)
	}
}

// relayed is what the library-built server saw on one connection.
type relayed struct {
	hdr        *proxyproto.Header
	err        error
	same       bool // ReadHeader returned the accepted *net.TCPConn itself
	isTCP      bool
	total      [2]int64 // bytes each way
	spliced    [2]int64 // of which in chunks only splice(2) moves
	remoteAddr netip.AddrPort
}

// startRelay runs a server built on the library: it reads the PROXY header
// with r, then joins the connection (wrapped by wrap, when not nil) to an
// echo server with a splice.Joiner whose buffers are 1 KiB. It returns its
// address and a channel of what it saw per connection.
func startRelay(t *testing.T, host string, r *proxyproto.Reader, wrap func(net.Conn) net.Conn) (int, <-chan relayed) {
	t.Helper()
	echo := testnet.Serve(t, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				_ = c.(*net.TCPConn).CloseWrite()
				return
			}
		}
	})
	out := make(chan relayed, 16)
	ln := testnet.ServeOn(t, net.JoinHostPort(host, "0"), func(c net.Conn) {
		ctx := context.Background()
		conn, hdr, err := r.ReadHeader(ctx, c)
		res := relayed{hdr: hdr, err: err, same: conn == c, remoteAddr: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
		_, res.isTCP = conn.(*net.TCPConn)
		if err == nil {
			if wrap != nil {
				conn = wrap(conn)
			}
			up, derr := net.Dial("tcp", echo.Addr().String())
			if derr != nil {
				res.err = derr
			} else {
				j := splice.Joiner{SpliceThreshold: joinerBuf, BufferSize: joinerBuf}
				var obs chunkObserver
				_, res.err = j.Join(ctx, conn, up, &obs)
				for d := range 2 {
					res.total[d], res.spliced[d] = obs.total[d].Load(), obs.spliced[d].Load()
				}
			}
		}
		out <- res
	})
	return ln.Addr().(*net.TCPAddr).Port, out
}

// roundTrip sends n random bytes on c, half-closes, and checks that the
// same bytes come back before EOF.
func roundTrip(t *testing.T, c net.Conn, n int) {
	t.Helper()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(60*time.Second)))
	h := sha256.New()
	got, err := io.Copy(h, c)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	require.Equal(t, int64(n), got)
	require.Equal(t, sha256.Sum256(data), [32]byte(h.Sum(nil)), "the bytes after the header came back intact")
}

func recvRelayed(t *testing.T, ch <-chan relayed) relayed {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("the relay saw no connection in 60s")
	}
	return relayed{}
}

// TestHAProxySendProxy: HAProxy 2.6 (send-proxy, send-proxy-v2) in front of
// a server built on the library. ReadHeader reads the client's addresses as
// HAProxy saw them, hands back the very *net.TCPConn, and the bytes after
// the header are moved by splice(2) — counted from the chunk sizes the
// splice package reports, against a control in which the same connection,
// wrapped in a struct as go-proxyproto wraps it, never splices.
func TestHAProxySendProxy(t *testing.T) {
	const n = 8 << 20
	for _, tc := range []struct {
		name, host, server string
		version            proxyproto.Version
		transport          proxyproto.Transport
		wrap               bool
	}{
		{"v1-tcp4", "127.0.0.1", "send-proxy", proxyproto.V1, proxyproto.TCP4, false},
		{"v1-tcp6", "::1", "send-proxy", proxyproto.V1, proxyproto.TCP6, false},
		{"v2-tcp4", "127.0.0.1", "send-proxy-v2", proxyproto.V2, proxyproto.TCP4, false},
		{"v2-tcp6", "::1", "send-proxy-v2", proxyproto.V2, proxyproto.TCP6, false},
		{"v2-tcp4-wrapped-control", "127.0.0.1", "send-proxy-v2", proxyproto.V2, proxyproto.TCP4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wrap func(net.Conn) net.Conn
			if tc.wrap {
				wrap = func(c net.Conn) net.Conn { return struct{ net.Conn }{c} }
			}
			var r proxyproto.Reader // zero value: a header required from every source
			relayPort, results := startRelay(t, "127.0.0.1", &r, wrap)
			front := freePort(t, tc.host)
			frontAddr := net.JoinHostPort(tc.host, strconv.Itoa(front))
			startHAProxy(t, fmt.Sprintf(`global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend f
    bind %s
    default_backend b
backend b
    server s1 127.0.0.1:%d %s
`, frontAddr, relayPort, tc.server), front)

			c, err := net.Dial("tcp", frontAddr)
			require.NoError(t, err)
			defer c.Close()
			roundTrip(t, c, n)
			res := recvRelayed(t, results)
			require.NoError(t, res.err)

			h := res.hdr
			require.NotNil(t, h)
			assert.Equal(t, tc.version, h.Version)
			assert.Equal(t, proxyproto.Proxy, h.Command)
			assert.Equal(t, tc.transport, h.Transport)
			assert.True(t, h.Proxied())
			// HAProxy reports the client's connection to it.
			assert.Equal(t, c.LocalAddr().(*net.TCPAddr).AddrPort(), h.Source)
			assert.Equal(t, c.RemoteAddr().(*net.TCPAddr).AddrPort(), h.Destination)
			assert.True(t, res.same, "ReadHeader hands back the accepted connection itself")
			assert.True(t, res.isTCP, "the connection after the header is a *net.TCPConn")

			assert.Equal(t, [2]int64{n, n}, res.total, "every byte relayed, both ways")
			t.Logf("%s: %d of %d bytes client->server and %d of %d server->client moved in chunks over %d bytes (splice)",
				tc.name, res.spliced[0], res.total[0], res.spliced[1], res.total[1], joinerBuf)
			if tc.wrap {
				assert.Zero(t, res.spliced[0]+res.spliced[1], "a wrapped connection cannot reach splice")
				return
			}
			assert.Greater(t, res.spliced[0], int64(n/2), "most client bytes went through splice(2)")
			assert.Greater(t, res.spliced[1], int64(n/2), "most echoed bytes went through splice(2)")
		})
	}
}

// testPKI is a CA, a server certificate for HAProxy (cert and key in one
// PEM file, as its crt option wants) and a client certificate.
type testPKI struct {
	caFile, serverFile string
	pool               *x509.CertPool
	client             tls.Certificate
}

func newPKI(t *testing.T, clientCN string, serverNames ...string) testPKI {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	serial := int64(1)
	mk := func(tmpl *x509.Certificate, parent *x509.Certificate, key *ecdsa.PrivateKey, signer *ecdsa.PrivateKey) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c
	}
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		require.NoError(t, err)
		return pemOf("PRIVATE KEY", der)
	}

	caKey := newKey()
	ca := mk(&x509.Certificate{Subject: pkix.Name{CommonName: "proxyproto test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, caKey, caKey)
	srvKey := newKey()
	srv := mk(&x509.Certificate{Subject: pkix.Name{CommonName: serverNames[0]}, DNSNames: serverNames,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, srvKey, caKey)
	cliKey := newKey()
	cli := mk(&x509.Certificate{Subject: pkix.Name{CommonName: clientCN},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, cliKey, caKey)

	p := testPKI{caFile: filepath.Join(dir, "ca.pem"), serverFile: filepath.Join(dir, "server.pem"), pool: x509.NewCertPool()}
	require.NoError(t, os.WriteFile(p.caFile, pemOf("CERTIFICATE", ca.Raw), 0o600))
	require.NoError(t, os.WriteFile(p.serverFile, append(pemOf("CERTIFICATE", srv.Raw), keyPEM(srvKey)...), 0o600))
	p.pool.AddCert(ca)
	p.client = tls.Certificate{Certificate: [][]byte{cli.Raw}, PrivateKey: cliKey, Leaf: cli}
	return p
}

// TestHAProxySendProxyV2TLVs: HAProxy terminates the client's TLS (with a
// client certificate, SNI and ALPN) and sends send-proxy-v2 with
// proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,
// unique-id,crc32c. The library reads every TLV as HAProxy filled it (the
// CRC32C verified), and the plain connection after the header still
// splices.
func TestHAProxySendProxyV2TLVs(t *testing.T) {
	pki := newPKI(t, "client.test", "sni.example")
	var r proxyproto.Reader
	relayPort, results := startRelay(t, "127.0.0.1", &r, nil)
	front := freePort(t, "127.0.0.1")
	frontAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(front))
	startHAProxy(t, fmt.Sprintf(`global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend f
    bind %s ssl crt %s ca-file %s verify optional alpn h2,http/1.1
    unique-id-format uid-%%ci-%%cp
    default_backend b
backend b
    server s1 127.0.0.1:%d send-proxy-v2 proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,unique-id,crc32c
`, frontAddr, pki.serverFile, pki.caFile, relayPort), front)

	c, err := tls.Dial("tcp", frontAddr, &tls.Config{
		ServerName:   "sni.example",
		RootCAs:      pki.pool,
		Certificates: []tls.Certificate{pki.client},
		NextProtos:   []string{"h2"},
		MinVersion:   tls.VersionTLS13,
	})
	require.NoError(t, err)
	defer c.Close()
	state := c.ConnectionState()
	require.Equal(t, "h2", state.NegotiatedProtocol)
	roundTrip(t, c, 1<<20)
	res := recvRelayed(t, results)
	require.NoError(t, res.err)

	h := res.hdr
	require.NotNil(t, h)
	t.Logf("header: %v", h)
	for _, v := range h.TLVs {
		t.Logf("TLV 0x%02x: %q", byte(v.Type), v.Value)
	}
	client := c.NetConn().LocalAddr().(*net.TCPAddr).AddrPort()
	assert.Equal(t, proxyproto.V2, h.Version)
	assert.Equal(t, proxyproto.TCP4, h.Transport)
	assert.Equal(t, client, h.Source)
	assert.Equal(t, netip.MustParseAddrPort(frontAddr), h.Destination)
	assert.Equal(t, "h2", h.ALPN())
	assert.Equal(t, "sni.example", h.Authority())
	assert.Equal(t, fmt.Sprintf("uid-%s-%d", client.Addr(), client.Port()), string(h.UniqueID()))
	_, hasCRC := h.TLV(proxyproto.TypeCRC32C)
	assert.True(t, hasCRC, "HAProxy sent a CRC32C (and ReadHeader verified it)")

	ssl, ok := h.SSL()
	require.True(t, ok, "an SSL TLV")
	assert.NotZero(t, ssl.Client&proxyproto.ClientSSL, "client connected over TLS")
	assert.NotZero(t, ssl.Client&proxyproto.ClientCertConn, "client presented a certificate on this connection")
	assert.True(t, ssl.ClientCertVerified())
	assert.Equal(t, "TLSv1.3", ssl.Version())
	assert.Equal(t, "client.test", ssl.CN())
	assert.Equal(t, tls.CipherSuiteName(state.CipherSuite), ssl.Cipher())
	assert.NotEmpty(t, ssl.SigAlg(), "signature algorithm of HAProxy's certificate")
	assert.NotEmpty(t, ssl.KeyAlg(), "key algorithm of HAProxy's certificate")

	assert.True(t, res.same)
	assert.Equal(t, [2]int64{1 << 20, 1 << 20}, res.total)
	assert.Positive(t, res.spliced[0]+res.spliced[1], "bytes after the header went through splice(2)")
}

// TestHAProxyAcceptProxy: the library's writer in front of HAProxy's
// accept-proxy (mode http). HAProxy forwards the addresses and TLVs it read
// from our header to an HTTP backend in request headers (%[src],
// %[fc_pp_authority], ...), and refuses a header whose CRC32C is wrong, so
// the checksum our writer computes is checked by HAProxy itself.
func TestHAProxyAcceptProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, k := range []string{"X-Src", "X-Src-Port", "X-Dst", "X-Dst-Port", "X-Authority", "X-Unique-Id"} {
			fmt.Fprintf(w, "%s=%s\n", k, r.Header.Get(k))
		}
	}))
	defer backend.Close()
	front := freePort(t, "127.0.0.1")
	frontAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(front))
	startHAProxy(t, fmt.Sprintf(`global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind %s accept-proxy
    http-request set-header X-Src %%[src]
    http-request set-header X-Src-Port %%[src_port]
    http-request set-header X-Dst %%[dst]
    http-request set-header X-Dst-Port %%[dst_port]
    http-request set-header X-Authority %%[fc_pp_authority]
    http-request set-header X-Unique-Id %%[fc_pp_unique_id]
    default_backend b
backend b
    server s1 %s
`, frontAddr, backend.Listener.Addr()), front)

	// ask sends header bytes and a request in one write and returns what
	// the backend saw, or the error.
	ask := func(t *testing.T, hdr []byte) (map[string]string, net.Conn, error) {
		c, err := net.Dial("tcp", frontAddr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		req := append(append([]byte(nil), hdr...), "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"...)
		_, err = c.Write(req)
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return nil, c, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
			k, v, _ := strings.Cut(line, "=")
			got[k] = v
		}
		return got, c, nil
	}
	format := func(t *testing.T, h *proxyproto.Header) []byte {
		b, err := h.Format()
		require.NoError(t, err)
		return b
	}
	crcTLVs := []proxyproto.TLV{
		{Type: proxyproto.TypeAuthority, Value: []byte("api.example")},
		{Type: proxyproto.TypeUniqueID, Value: []byte("req-42")},
		{Type: proxyproto.TypeNoop, Value: []byte("pad")},
		{Type: proxyproto.TypeCRC32C},
	}

	for _, tc := range []struct {
		name string
		hdr  proxyproto.Header
		want map[string]string // nil: the connection's own addresses
	}{
		{"v1-tcp4", proxyproto.Header{Version: proxyproto.V1, Command: proxyproto.Proxy, Transport: proxyproto.TCP4,
			Source: netip.MustParseAddrPort("192.0.2.10:40000"), Destination: netip.MustParseAddrPort("198.51.100.20:8443")},
			map[string]string{"X-Src": "192.0.2.10", "X-Src-Port": "40000", "X-Dst": "198.51.100.20", "X-Dst-Port": "8443", "X-Authority": "", "X-Unique-Id": ""}},
		{"v1-tcp6", proxyproto.Header{Version: proxyproto.V1, Command: proxyproto.Proxy, Transport: proxyproto.TCP6,
			Source: netip.MustParseAddrPort("[2001:db8::10]:40001"), Destination: netip.MustParseAddrPort("[2001:db8::20]:443")},
			map[string]string{"X-Src": "2001:db8::10", "X-Src-Port": "40001", "X-Dst": "2001:db8::20", "X-Dst-Port": "443", "X-Authority": "", "X-Unique-Id": ""}},
		{"v2-tcp4-tlvs-crc32c", proxyproto.Header{Version: proxyproto.V2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4,
			Source: netip.MustParseAddrPort("203.0.113.7:1234"), Destination: netip.MustParseAddrPort("198.51.100.1:80"), TLVs: crcTLVs},
			map[string]string{"X-Src": "203.0.113.7", "X-Src-Port": "1234", "X-Dst": "198.51.100.1", "X-Dst-Port": "80", "X-Authority": "api.example", "X-Unique-Id": "req-42"}},
		{"v2-tcp6-tlvs-crc32c", proxyproto.Header{Version: proxyproto.V2, Command: proxyproto.Proxy, Transport: proxyproto.TCP6,
			Source: netip.MustParseAddrPort("[2001:db8::7]:5555"), Destination: netip.MustParseAddrPort("[2001:db8::1]:443"), TLVs: crcTLVs},
			map[string]string{"X-Src": "2001:db8::7", "X-Src-Port": "5555", "X-Dst": "2001:db8::1", "X-Dst-Port": "443", "X-Authority": "api.example", "X-Unique-Id": "req-42"}},
		{"v2-local", proxyproto.Header{Version: proxyproto.V2, Command: proxyproto.Local}, nil},
		{"v1-unknown", proxyproto.Header{Version: proxyproto.V1, Command: proxyproto.Proxy, Transport: proxyproto.Unspec}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, c, err := ask(t, format(t, &tc.hdr))
			require.NoError(t, err)
			want := tc.want
			if want == nil {
				local := c.LocalAddr().(*net.TCPAddr).AddrPort()
				want = map[string]string{"X-Src": local.Addr().String(), "X-Src-Port": strconv.Itoa(int(local.Port())),
					"X-Dst": "127.0.0.1", "X-Dst-Port": strconv.Itoa(front), "X-Authority": "", "X-Unique-Id": ""}
			}
			assert.Equal(t, want, got)
		})
	}

	t.Run("v2-bad-crc32c-refused", func(t *testing.T) {
		h := proxyproto.Header{Version: proxyproto.V2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4,
			Source: netip.MustParseAddrPort("203.0.113.7:1234"), Destination: netip.MustParseAddrPort("198.51.100.1:80"), TLVs: crcTLVs}
		b := format(t, &h)
		b[len(b)-1] ^= 0xff // the checksum's last byte
		_, _, err := proxyproto.Parse(b)
		require.ErrorIs(t, err, proxyproto.ErrChecksum, "our parser refuses it too")
		_, _, err = ask(t, b)
		require.Error(t, err, "HAProxy must refuse a header whose CRC32C is wrong")
	})
}
