package metrics_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
)

// greeting is what the backend sends first, so that a client that says
// nothing (the detection-timeout case) still has something to wait for.
const greeting = "220 backend ready\r\n"

// backend accepts connections, sends the greeting and echoes everything,
// half-closing after the client's EOF. tlsCfg, if set, wraps connections.
func backend(t *testing.T, tlsCfg *tls.Config) string {
	t.Helper()
	return testnet.Serve(t, func(c net.Conn) {
		var rw net.Conn = c
		if tlsCfg != nil {
			rw = tls.Server(c, tlsCfg)
		}
		_ = rw.SetDeadline(time.Now().Add(30 * time.Second))
		if tlsCfg == nil {
			if _, err := io.WriteString(rw, greeting); err != nil {
				return
			}
		}
		if _, err := io.Copy(rw, rw); err != nil {
			return
		}
		if cw, ok := rw.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}).Addr().String()
}

// proxy accepts connections, detects their protocol and splices them to
// the backend at upstream, with every hook of the metrics registry wired in
// (or none when reg is nil). It returns the proxy's address and a function
// that waits until n connections have been fully handled.
func proxy(t *testing.T, reg *metrics.Registry, d *detect.Detector, upstream string) (addr string, waitN func(n int64)) {
	t.Helper()
	d.OnResult = reg.DetectHook(opaque.Inbound)
	var j splice.Joiner
	var done atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	ln := testnet.Serve(t, func(c net.Conn) {
		defer done.Add(1)
		res, c, err := d.Detect(ctx, c)
		if err != nil {
			c.Close()
			return
		}
		mc := reg.OpenConn(metrics.ConnLabelsFor(opaque.Inbound, res.Protocol, false))
		up, err := net.Dial("tcp", upstream)
		if err != nil {
			c.Close()
			mc.End(splice.Stats{Err: err})
			return
		}
		st, _ := j.Join(ctx, c, up, mc.Observer())
		mc.End(st)
	})
	t.Cleanup(cancel) // runs before Serve's cleanup waits for the handlers
	waitN = func(n int64) {
		require.Eventually(t, func() bool { return done.Load() >= n }, 30*time.Second, 5*time.Millisecond,
			"proxy did not finish %d connections", n)
	}
	return ln.Addr().String(), waitN
}

// countingConn counts the bytes the client moves on the wire.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

func (c *countingConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// plainExchange sends payload (after waiting for the greeting when
// waitGreeting), half-closes and reads everything back.
func plainExchange(t *testing.T, addr string, payload []byte, waitGreeting bool) (sent, received int64) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c := &countingConn{Conn: raw}
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	var got bytes.Buffer
	if waitGreeting {
		g := make([]byte, len(greeting))
		_, err := io.ReadFull(c, g)
		require.NoError(t, err)
		got.Write(g)
	}
	require.NoError(t, sendAndRead(t, c, payload, &got))
	require.Equal(t, greeting+string(payload), got.String(), "bytes through the proxy")
	return c.out.Load(), c.in.Load()
}

func TestDetectSpliceCounters(t *testing.T) {
	cert := selfSigned(t)
	plainUp := backend(t, nil)
	tlsUp := backend(t, &tls.Config{Certificates: []tls.Certificate{cert}})

	http1 := append([]byte("POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100000\r\n\r\n"), randomBytes(t, 100000)...)
	http2 := append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), randomBytes(t, 70000)...)
	unknown := append([]byte{0x00, 0xff, 0x13}, randomBytes(t, 300000)...)

	type tc struct {
		name     string
		up       string
		run      func(addr string) (sent, received int64)
		tls      string // the tls label
		protocol string
		reason   string
		timeout  time.Duration
	}
	cases := []tc{
		{name: "HTTP1", up: plainUp, tls: "false", protocol: "HTTP/1", reason: "matched",
			run: func(a string) (int64, int64) { return plainExchange(t, a, http1, false) }},
		{name: "HTTP2", up: plainUp, tls: "false", protocol: "HTTP/2", reason: "matched",
			run: func(a string) (int64, int64) { return plainExchange(t, a, http2, false) }},
		{name: "Unknown", up: plainUp, tls: "false", protocol: "unknown", reason: "no_match",
			run: func(a string) (int64, int64) { return plainExchange(t, a, unknown, false) }},
		{name: "Timeout", up: plainUp, tls: "false", protocol: "unknown", reason: "timeout",
			timeout: 300 * time.Millisecond,
			run:     func(a string) (int64, int64) { return plainExchange(t, a, []byte("ping after the greeting"), true) }},
		{name: "TLS", up: tlsUp, tls: "opaque", protocol: "TLS", reason: "matched",
			run: func(a string) (int64, int64) { return tlsExchange(t, a, randomBytes(t, 200000)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := metrics.New(metrics.Config{})
			d := &detect.Detector{Timeout: c.timeout}
			addr, wait := proxy(t, reg, d, c.up)
			const conns = 3
			var sent, received int64
			for range conns {
				s, r := c.run(addr)
				sent += s
				received += r
			}
			wait(conns)

			snap := reg.Snapshot()
			conn := "inbound " + c.protocol + " " + c.tls // one label set
			assert.Equal(t, []string{fmt.Sprint(conn, " = ", conns)}, metrics.Rows(snap, "tcp_open_total"))
			assert.Equal(t, []string{conn + " = 0"}, metrics.Rows(snap, "tcp_open_connections"))
			assert.Equal(t, []string{fmt.Sprint(conn, " = ", sent)}, metrics.Rows(snap, "tcp_read_bytes_total"),
				"bytes the clients sent")
			assert.Equal(t, []string{fmt.Sprint(conn, " = ", received)}, metrics.Rows(snap, "tcp_write_bytes_total"),
				"bytes the clients received")
			assert.Equal(t, []string{fmt.Sprint(conn, ` "" = `, conns)}, metrics.Rows(snap, "tcp_close_total"), "clean closes")
			life := snap.Histogram("tcp_connection_duration_seconds")
			assert.Equal(t, uint64(conns), life.Count, "tcp_connection_duration_seconds")
			assert.Positive(t, life.Sum)

			assert.Equal(t, []string{fmt.Sprint("inbound ", c.protocol, " ", c.reason, " = ", conns)},
				metrics.Rows(snap, "protocol_detect_total"))
			det := snap.Histogram("protocol_detect_duration_seconds")
			assert.Equal(t, uint64(conns), det.Count)
			if c.timeout > 0 {
				assert.GreaterOrEqual(t, det.Sum, conns*c.timeout.Seconds()*0.9, "timeouts take the timeout")
			}
		})
	}
}

// TestClosedBeforeDetection: a client that connects and leaves counts a
// "closed" detection.
func TestClosedBeforeDetection(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	d := &detect.Detector{}
	addr, wait := proxy(t, reg, d, backend(t, nil))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	wait(1)
	assert.Equal(t, []string{"inbound unknown closed = 1"}, metrics.Rows(reg.Snapshot(), "protocol_detect_total"))
}

// TestResetCountsErrno: a client that resets mid-stream is counted under
// its errno.
func TestResetCountsErrno(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	addr, wait := proxy(t, reg, &detect.Detector{}, backend(t, nil))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	// Wait for the echo so the join is running, then reset.
	buf := make([]byte, len(greeting))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).SetLinger(0))
	require.NoError(t, c.Close())
	wait(1)
	assert.Equal(t, []string{"inbound HTTP/1 false ECONNRESET = 1"}, metrics.Rows(reg.Snapshot(), "tcp_close_total"))
}

// halfCloser is a connection whose sending side can be closed alone.
type halfCloser interface {
	io.ReadWriter
	CloseWrite() error
}

// sendAndRead writes payload to c and half-closes it while reading into got
// everything c sends back until EOF; it returns the read error.
func sendAndRead(t *testing.T, c halfCloser, payload []byte, got *bytes.Buffer) error {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() {
		_, werr := c.Write(payload)
		assert.NoError(t, werr)
		assert.NoError(t, c.CloseWrite())
	})
	_, err := io.Copy(got, c)
	wg.Wait()
	return err
}

func tlsExchange(t *testing.T, addr string, payload []byte) (sent, received int64) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	cc := &countingConn{Conn: raw}
	c := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, ServerName: "example.test"})
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	require.NoError(t, c.Handshake())
	var got bytes.Buffer
	err = sendAndRead(t, c, payload, &got)
	if err != nil && !errors.Is(err, io.EOF) {
		require.NoError(t, err)
	}
	// Read until the TCP EOF so that every byte the proxy wrote is counted.
	_, _ = io.Copy(io.Discard, cc)
	require.Equal(t, payload, got.Bytes())
	return cc.out.Load(), cc.in.Load()
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	s := httptest.NewUnstartedServer(nil)
	defer s.Close()
	s.StartTLS()
	return s.TLS.Certificates[0]
}

// TestServerFirstDetection: with DetectUpstream, an upstream that greets
// first (SMTP, MySQL) is counted as a server_first detection, at once, and
// its bytes still flow through the splice and the byte counters.
func TestServerFirstDetection(t *testing.T) {
	reg := metrics.New(metrics.Config{})
	d := &detect.Detector{OnResult: reg.DetectHook(opaque.Outbound)}
	upstream := backend(t, nil) // sends the greeting first

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", upstream)
		if err != nil {
			c.Close()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, c, up, err := d.DetectUpstream(ctx, c, up)
		if err != nil {
			c.Close()
			up.Close()
			return
		}
		mc := reg.OpenConn(metrics.ConnLabelsFor(opaque.Outbound, res.Protocol, false))
		var j splice.Joiner
		st, _ := j.Join(ctx, c, up, mc.Observer())
		mc.End(st)
	}()
	sent, received := plainExchange(t, ln.Addr().String(), []byte("EHLO client.test\r\n"), true)
	<-done

	snap := reg.Snapshot()
	assert.Equal(t, []string{"outbound unknown server_first = 1"}, metrics.Rows(snap, "protocol_detect_total"))
	conn := []string{"direction", "outbound", "protocol", "unknown", "tls", "false"}
	assert.Equal(t, 1.0, snap.Value("tcp_open_total", conn...))
	assert.Equal(t, float64(sent), snap.Value("tcp_read_bytes_total", conn...))
	assert.Equal(t, float64(received), snap.Value("tcp_write_bytes_total", conn...))
	assert.Equal(t, 1.0, snap.Value("tcp_close_total", append(conn, "errno", "")...))
}
