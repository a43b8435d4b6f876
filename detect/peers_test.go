package detect_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
)

// serveHTTP serves conn with a net/http server (HTTP/1 and h2c) that
// answers "<proto> <path>"; the returned func shuts it down.
func serveHTTP(t *testing.T, conn net.Conn, tlsConf *tls.Config) func() {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols: &protos,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
		}),
		ReadHeaderTimeout: 20 * time.Second,
	}
	ol := newOneConnListener(conn)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ol)
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		recv(t, done, "done")
	}
}

// listenDetect listens on loopback and runs d.Detect on the first
// connection.
func listenDetect(t *testing.T, d *detect.Detector) (addr string, det <-chan detected, closeFn func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln.Addr().String(), acceptDetect(t, ln, d), func() { ln.Close() }
}

func TestPeerNetHTTPClient(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	addr, det, closeLn := listenDetect(t, &detect.Detector{})
	defer closeLn()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	type resp struct {
		body string
		err  error
	}
	out := make(chan resp, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPatch, "http://"+addr+"/items/7", strings.NewReader("{}"))
		req.Host = "items.example"
		r, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			out <- resp{err: err}
			return
		}
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		out <- resp{string(b), err}
	}()
	dd := recv(t, det, "det")
	require.NoError(t, dd.err)
	assert.Equal(t, detect.HTTP1, dd.res.Protocol)
	assert.Equal(t, "PATCH", dd.res.HTTP.Method)
	assert.Equal(t, "items.example", dd.res.HTTP.Host())
	stop := serveHTTP(t, dd.conn, nil)
	r := recv(t, out, "out")
	require.NoError(t, r.err)
	assert.Equal(t, "HTTP/1.1 /items/7", r.body)
	tr.CloseIdleConnections()
	stop()
}

// A crypto/tls client with SNI and ALPN h2: the detector reports both, and
// the handshake then completes with a real tls.Server on the detected
// connection. Inside the TLS session a second Detect runs on the *tls.Conn
// (the replay path) and finds the HTTP/1 request.
func TestPeerCryptoTLSClient(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	addr, det, closeLn := listenDetect(t, &detect.Detector{})
	defer closeLn()
	srvConf, pool := testCert(t, "sni.example.test")
	srvConf.NextProtos = []string{"h2", "http/1.1"}

	clientDone := make(chan error, 1)
	var negotiated string
	go func() {
		clientDone <- func() error {
			c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "sni.example.test", RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}})
			if err != nil {
				return err
			}
			defer c.Close()
			negotiated = c.ConnectionState().NegotiatedProtocol
			if _, err := c.Write([]byte("GET /inside HTTP/1.1\r\nHost: sni.example.test\r\n\r\n")); err != nil {
				return err
			}
			_, err = io.ReadAll(c)
			return err
		}()
	}()
	dd := recv(t, det, "det")
	require.NoError(t, dd.err)
	assert.Equal(t, detect.TLS, dd.res.Protocol)
	assert.Equal(t, "sni.example.test", dd.res.TLS.ServerName())
	assert.True(t, dd.res.TLS.HasALPN("h2"))
	assert.Equal(t, []string{"h2", "http/1.1"}, dd.res.TLS.ALPN())
	assert.True(t, dd.res.TLS.SupportsVersion(tls.VersionTLS13))

	tc := tls.Server(dd.conn, srvConf)
	require.NoError(t, tc.SetDeadline(time.Now().Add(20*time.Second)))
	require.NoError(t, tc.Handshake())
	require.NoError(t, tc.SetDeadline(time.Time{}))
	assert.Equal(t, "h2", tc.ConnectionState().NegotiatedProtocol)

	res, inner, err := (&detect.Detector{}).Detect(context.Background(), tc)
	require.NoError(t, err)
	assert.Equal(t, detect.HTTP1, res.Protocol)
	rc, ok := inner.(*detect.ReplayConn)
	require.True(t, ok, "a *tls.Conn takes the replay path")
	assert.Same(t, tc, rc.NetConn())
	buf := make([]byte, len("GET /inside HTTP/1.1\r\n"))
	_, err = io.ReadFull(inner, buf)
	require.NoError(t, err)
	assert.Equal(t, "GET /inside HTTP/1.1\r\n", string(buf))
	require.NoError(t, rc.CloseWrite()) // tls.Conn supports CloseWrite: the client sees EOF
	require.NoError(t, recv(t, clientDone, "clientDone"))
	assert.Equal(t, "h2", negotiated)
	inner.Close()
}

func TestPeerCurl(t *testing.T) {
	curl := needProgram(t, "curl", "curl")
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cases := []struct {
		name  string
		args  []string
		d     detect.Detector
		proto detect.Protocol
		want  string
	}{
		{"http1.1", []string{"--http1.1"}, detect.Detector{}, detect.HTTP1, "HTTP/1.1 /curl"},
		{"h2-prior-knowledge", []string{"--http2-prior-knowledge"}, detect.Detector{}, detect.HTTP2, "HTTP/2.0 /curl"},
		{"h2-prior-knowledge-grpc-active", []string{"--http2-prior-knowledge"},
			detect.Detector{GRPC: detect.GRPCActive, GRPCWait: 10 * time.Second}, detect.HTTP2, "HTTP/2.0 /curl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, det, closeLn := listenDetect(t, &tc.d)
			defer closeLn()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{"-sS", "--max-time", "20"}, tc.args...)
			cmd := exec.CommandContext(ctx, curl, append(args, "http://"+addr+"/curl")...)
			res := runCmd(cmd)
			dd := recv(t, det, "det")
			require.NoError(t, dd.err)
			assert.Equal(t, tc.proto, dd.res.Protocol)
			stop := serveHTTP(t, dd.conn, nil)
			defer stop()
			r := recv(t, res, "res")
			require.NoError(t, r.err, "curl: %s", r.out)
			assert.Equal(t, tc.want, string(r.out))
		})
	}
}

// cmdResult is how a command run by runCmd ended.
type cmdResult struct {
	out []byte // stdout and stderr
	err error
}

// runCmd runs cmd in the background; its result arrives on the channel.
func runCmd(cmd *exec.Cmd) <-chan cmdResult {
	res := make(chan cmdResult, 1)
	go func() {
		out, err := cmd.CombinedOutput()
		res <- cmdResult{out, err}
	}()
	return res
}

func TestPeerOpenSSLClient(t *testing.T) {
	openssl := needProgram(t, "openssl", "openssl")
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	addr, det, closeLn := listenDetect(t, &detect.Detector{})
	defer closeLn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr,
		"-servername", "openssl.example.test", "-alpn", "h2,http/1.1")
	cmd.Stdin = strings.NewReader("") // EOF on stdin: close after the handshake
	res := runCmd(cmd)
	dd := recv(t, det, "det")
	require.NoError(t, dd.err)
	defer dd.conn.Close()
	assert.Equal(t, detect.TLS, dd.res.Protocol)
	assert.Equal(t, "openssl.example.test", dd.res.TLS.ServerName())
	assert.Equal(t, []string{"h2", "http/1.1"}, dd.res.TLS.ALPN())
	assert.True(t, dd.res.TLS.SupportsVersion(tls.VersionTLS13))

	srvConf, _ := testCert(t, "openssl.example.test")
	srvConf.NextProtos = []string{"h2"}
	tc := tls.Server(dd.conn, srvConf)
	require.NoError(t, tc.SetDeadline(time.Now().Add(20*time.Second)))
	require.NoError(t, tc.Handshake())
	_, _ = io.Copy(io.Discard, tc) // until s_client closes
	r := recv(t, res, "res")
	assert.Contains(t, string(r.out), "ALPN protocol: h2", "s_client output: %s", r.out)
}
