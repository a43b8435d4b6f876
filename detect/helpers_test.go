package detect_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
)

// needProgram returns the path of prog, skipping the test (naming the
// Debian package) when it is missing, or failing it when CI=true.
func needProgram(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (Debian package %s) and CI=true", prog, pkg)
		}
		t.Skipf("%s not found: install the Debian package %s", prog, pkg)
	}
	return p
}

// tcpPair returns a connected loopback client and server.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	r := recv(t, ch, "ch")
	require.NoError(t, r.err)
	return c.(*net.TCPConn), r.c.(*net.TCPConn)
}

// newOneConnListener serves c to a server that wants a listener.
func newOneConnListener(c net.Conn) *testnet.OneConnListener { return testnet.NewOneConnListener(c) }

// goClientHello captures the ClientHello that Go's crypto/tls client sends
// with the given SNI and ALPN (the Go 1.26 default carries a post-quantum
// X25519MLKEM768 key share, about 1.5 KiB).
func goClientHello(t testing.TB, sni string, alpn []string) []byte {
	t.Helper()
	c, s := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(c, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true}).Handshake()
	}()
	var buf []byte
	tmp := make([]byte, 4096)
	require.NoError(t, s.SetReadDeadline(time.Now().Add(10*time.Second)))
	for {
		n, err := s.Read(tmp)
		buf = append(buf, tmp[:n]...)
		var info detect.TLSInfo
		if detect.ParseClientHello(buf, &info) == detect.Match {
			break
		}
		require.NoError(t, err)
	}
	s.Close()
	c.Close()
	recv(t, done, "done")
	return buf
}

// refragment re-frames a single-record handshake stream into records of at
// most size payload bytes each.
func refragment(hello []byte, size int) []byte {
	payload := hello[5:]
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, 0x16, hello[1], hello[2], 0, 0)
		binary.BigEndian.PutUint16(out[len(out)-2:], uint16(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

// testCert returns a server config with a fresh self-signed certificate for
// names, and a pool trusting it.
func testCert(t testing.TB, names ...string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
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
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}, pool
}

// allMatchers is every built-in matcher.
func allMatchers() []detect.Matcher {
	return append(detect.DefaultMatchers(), detect.PROXYMatcher(), detect.SSHMatcher(), detect.PostgreSQLMatcher())
}

// testWait bounds every wait of the tests for another goroutine.
const testWait = testnet.Wait

// recv receives from ch, failing the test when nothing comes within
// testWait.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	return testnet.Recv(t, ch, what)
}

// waitGroup waits for wg, failing the test when it is not done within
// testWait.
func waitGroup(t testing.TB, wg *sync.WaitGroup, what string) {
	t.Helper()
	testnet.WaitGroup(t, wg, what)
}

// bounded sets a read deadline testWait away on c and returns it, so a
// read until EOF fails instead of hanging when the peer goes wrong and
// never closes. (It cannot fail the test: a net.Pipe whose other end
// closed refuses deadlines, and its reads end at once anyway.)
func bounded(c net.Conn) net.Conn {
	_ = c.SetReadDeadline(time.Now().Add(testWait))
	return c
}

// httpGet fetches url through tr (its idle connections closed after) and
// returns the body.
func httpGet(t testing.TB, tr *http.Transport, url string) string {
	t.Helper()
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// activeGRPCClient plays, in a goroutine, a client of active gRPC
// detection on client: it writes head, reads the detector's frame (which
// must be the one empty SETTINGS frame), writes each of writes in turn,
// waits for release to be closed when it is not nil, and ends its sending
// side. The channel gets the first error.
func activeGRPCClient(tr transport, client net.Conn, head []byte, release <-chan struct{}, writes ...[]byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			if _, err := client.Write(head); err != nil {
				return err
			}
			got := make([]byte, 9)
			if _, err := io.ReadFull(client, got); err != nil {
				return err
			}
			if !bytes.Equal(got, []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}) {
				return fmt.Errorf("detector wrote %x, want one empty SETTINGS frame", got)
			}
			for _, w := range writes {
				if _, err := client.Write(w); err != nil {
					return err
				}
			}
			if release != nil {
				<-release
			}
			return tr.closeWrite(client)
		}()
	}()
	return done
}
