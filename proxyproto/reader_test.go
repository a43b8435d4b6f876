package proxyproto_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/proxyproto"
)

// paths are the two ways ReadHeader reads: a TCP connection (peeked with
// MSG_PEEK on Linux) and a pipe (read, with a replaying conn when needed).
var paths = []struct {
	name string
	pair func(t *testing.T) (client, server net.Conn)
}{
	{"tcp", func(t *testing.T) (net.Conn, net.Conn) { c, s := tcpPair(t, "tcp4"); return c, s }},
	{"pipe", func(t *testing.T) (net.Conn, net.Conn) {
		c, s := net.Pipe()
		t.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}},
}

// send writes the parts to c from a goroutine (net.Pipe writes block until
// read), pausing between them, then half-closes (TCP) or closes (pipe)
// when closeAfter is set. Wait for the returned channel before the test
// ends.
func send(c net.Conn, closeAfter bool, parts ...string) <-chan error {
	done := make(chan error, 1)
	go func() {
		var err error
		for i, p := range parts {
			if i > 0 {
				time.Sleep(2 * time.Millisecond)
			}
			if _, err = c.Write([]byte(p)); err != nil {
				break
			}
		}
		if err == nil && closeAfter {
			if tc, ok := c.(*net.TCPConn); ok {
				err = tc.CloseWrite()
			} else {
				err = c.Close()
			}
		}
		done <- err
	}()
	return done
}

// readAll reads c to EOF (the client half-closed), bounded by a deadline.
func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	// (A net.Pipe whose peer closed refuses deadlines: io.ErrClosedPipe.)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Time{})
	return string(b)
}

const hdrV1 = "PROXY TCP4 192.0.2.1 198.51.100.2 1234 443\r\n"

var hdrV2 = v2(0x21, 0x11, ip4Block+tlv(0x02, "a.example"))

func TestReadHeaderPolicies(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				policy  proxyproto.Policy
				send    string
				wantHdr bool
				kind    error  // nil: no error
				rest    string // what the conn reads after ReadHeader (on success)
			}{
				{"require-v1", proxyproto.Require, hdrV1 + "data", true, nil, "data"},
				{"require-v2", proxyproto.Require, hdrV2 + "data", true, nil, "data"},
				{"require-none", proxyproto.Require, "GET / HTTP/1.1\r\n\r\n", false, proxyproto.ErrNoHeader, ""},
				{"allow-v2", proxyproto.Allow, hdrV2 + "data", true, nil, "data"},
				{"allow-none", proxyproto.Allow, "GET / HTTP/1.1\r\n\r\n", false, nil, "GET / HTTP/1.1\r\n\r\n"},
				{"allow-short-prefix-then-other", proxyproto.Allow, "PROXIMA", false, nil, "PROXIMA"},
				{"ignore-v1", proxyproto.Ignore, hdrV1 + "data", false, nil, "data"},
				{"ignore-none", proxyproto.Ignore, "data", false, nil, "data"},
				{"reject-v2", proxyproto.Reject, hdrV2 + "data", false, proxyproto.ErrUnexpectedHeader, ""},
				{"reject-none", proxyproto.Reject, "\x16\x03\x01 tls", false, nil, "\x16\x03\x01 tls"},
				{"skip-v1", proxyproto.Skip, hdrV1 + "data", false, nil, hdrV1 + "data"},
				{"allow-invalid", proxyproto.Allow, "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", false, proxyproto.ErrInvalid, ""},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c, s := p.pair(t)
					sent := send(c, true, tc.send)
					r := proxyproto.Reader{Default: tc.policy, Timeout: 10 * time.Second}
					conn, h, err := r.ReadHeader(context.Background(), s)
					require.NotNil(t, conn)
					if tc.kind != nil {
						require.ErrorIs(t, err, tc.kind)
						assert.Nil(t, h)
						var e *proxyproto.Error
						require.True(t, errors.As(err, &e))
						if p.name == "tcp" {
							assert.Equal(t, c.LocalAddr().(*net.TCPAddr).AddrPort(), e.Source, "the error names the source")
							assert.Contains(t, err.Error(), "(from 127.0.0.1:")
						}
						conn.Close()
						<-sent
						return
					}
					require.NoError(t, err)
					if tc.wantHdr {
						require.NotNil(t, h)
						assert.Equal(t, src4, h.Source)
						assert.Equal(t, dst4, h.Destination)
					} else {
						assert.Nil(t, h)
					}
					if p.name == "tcp" && runtime.GOOS == "linux" {
						assert.Same(t, s, conn, "the very *net.TCPConn comes back")
					}
					assert.Equal(t, tc.rest, readAll(t, conn))
					require.NoError(t, <-sent)
				})
			}
		})
	}
}

func TestPolicyFor(t *testing.T) {
	r := proxyproto.Reader{
		Rules: []proxyproto.Rule{
			{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Policy: proxyproto.Allow},
			{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Policy: proxyproto.Require},
			{Prefix: netip.MustParsePrefix("10.1.2.0/24"), Policy: proxyproto.Skip},
			{Prefix: netip.MustParsePrefix("10.1.2.0/24"), Policy: proxyproto.Ignore}, // a second of equal length: the first wins
			{Prefix: netip.MustParsePrefix("2001:db8::/32"), Policy: proxyproto.Ignore},
		},
		Default: proxyproto.Reject,
	}
	for addr, want := range map[string]proxyproto.Policy{
		"10.9.9.9":          proxyproto.Allow,
		"10.1.9.9":          proxyproto.Require,
		"10.1.2.3":          proxyproto.Skip,
		"::ffff:10.1.2.3":   proxyproto.Skip, // IPv4-mapped matches as IPv4
		"192.0.2.1":         proxyproto.Reject,
		"2001:db8::1":       proxyproto.Ignore,
		"2001:db9::1":       proxyproto.Reject,
		"fe80::1%eth0":      proxyproto.Reject,
		"::ffff:192.0.2.10": proxyproto.Reject,
	} {
		assert.Equal(t, want, r.PolicyFor(netip.MustParseAddr(addr)), addr)
	}
	assert.Equal(t, proxyproto.Reject, r.PolicyFor(netip.Addr{}), "no address: the default")
	var zero proxyproto.Reader
	assert.Equal(t, proxyproto.Require, zero.PolicyFor(netip.MustParseAddr("192.0.2.1")), "the zero Reader requires a header")
	assert.Equal(t, "require allow ignore reject skip", strings.Join([]string{
		proxyproto.Require.String(), proxyproto.Allow.String(), proxyproto.Ignore.String(),
		proxyproto.Reject.String(), proxyproto.Skip.String()}, " "))
}

// TestReadHeaderRulesBySource: the policy follows the connection's remote
// address (here 127.0.0.1 and ::1).
func TestReadHeaderRulesBySource(t *testing.T) {
	r := proxyproto.Reader{
		Rules:   []proxyproto.Rule{{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Policy: proxyproto.Require}},
		Default: proxyproto.Reject,
	}
	c, s := tcpPair(t, "tcp4")
	sent := send(c, true, hdrV1)
	_, h, err := r.ReadHeader(context.Background(), s)
	require.NoError(t, err)
	require.NotNil(t, h)
	require.NoError(t, <-sent)

	c, s = tcpPair(t, "tcp6")
	sent = send(c, true, hdrV1)
	_, _, err = r.ReadHeader(context.Background(), s)
	require.ErrorIs(t, err, proxyproto.ErrUnexpectedHeader, "::1 is not in 127.0.0.0/8")
	require.NoError(t, <-sent)
}

func TestReadHeaderSilenceAndClose(t *testing.T) {
	const timeout = 150 * time.Millisecond
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				policy proxyproto.Policy
				send   string
				close  bool
				kind   error
				rest   string
			}{
				{"require-silent", proxyproto.Require, "", false, proxyproto.ErrTimeout, ""},
				{"allow-silent", proxyproto.Allow, "", false, nil, ""},
				{"require-partial-silent", proxyproto.Require, "PROXY TCP4 1.2", false, proxyproto.ErrTimeout, ""},
				{"allow-partial-silent", proxyproto.Allow, "PROXY TCP4 1.2", false, proxyproto.ErrTimeout, ""},
				{"allow-partial-v2-silent", proxyproto.Allow, hdrV2[:20], false, proxyproto.ErrTimeout, ""},
				{"allow-ambiguous-silent", proxyproto.Allow, "PRO", false, nil, "PRO"},
				{"require-ambiguous-silent", proxyproto.Require, "PRO", false, proxyproto.ErrTimeout, ""},
				{"require-closed", proxyproto.Require, "", true, proxyproto.ErrNoHeader, ""},
				{"allow-closed", proxyproto.Allow, "", true, nil, ""},
				{"require-partial-closed", proxyproto.Require, "PROXY TCP4 1.2", true, proxyproto.ErrTruncated, ""},
				{"allow-partial-v2-closed", proxyproto.Allow, hdrV2[:20], true, proxyproto.ErrTruncated, ""},
				{"allow-ambiguous-closed", proxyproto.Allow, "\r\n\r\n", true, nil, "\r\n\r\n"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c, s := p.pair(t)
					var parts []string
					if tc.send != "" {
						parts = append(parts, tc.send)
					}
					sent := send(c, tc.close, parts...)
					r := proxyproto.Reader{Default: tc.policy, Timeout: timeout}
					if tc.close {
						r.Timeout = 30 * time.Second // a close must be seen at once, not after a timeout
					}
					conn, h, err := r.ReadHeader(context.Background(), s)
					assert.Nil(t, h)
					if tc.kind != nil {
						require.ErrorIs(t, err, tc.kind)
						if tc.kind == proxyproto.ErrTimeout {
							require.ErrorIs(t, err, os.ErrDeadlineExceeded)
						}
						if tc.kind == proxyproto.ErrTruncated || tc.close && tc.kind == proxyproto.ErrNoHeader {
							require.ErrorIs(t, err, io.EOF)
						}
					} else {
						require.NoError(t, err)
					}
					require.NoError(t, <-sent)
					if tc.close && tc.kind == nil {
						assert.Equal(t, tc.rest, readAll(t, conn))
					}
					if !tc.close && tc.kind == nil {
						// The deadline is cleared: the connection waits for
						// more, and what was sent is still there.
						go func() {
							time.Sleep(2 * timeout)
							_, _ = c.Write([]byte("late"))
							if tc, ok := c.(*net.TCPConn); ok {
								_ = tc.CloseWrite()
							} else {
								_ = c.Close()
							}
						}()
						assert.Equal(t, tc.rest+"late", readAll(t, conn))
					}
				})
			}
		})
	}
}

func TestReadHeaderContext(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			c, s := p.pair(t)
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			r := proxyproto.Reader{Default: proxyproto.Allow, Timeout: -1}
			conn, h, err := r.ReadHeader(ctx, s)
			require.ErrorIs(t, err, context.Canceled)
			assert.Nil(t, h)
			// The deadline that interrupted the read is gone.
			sent := send(c, true, hdrV1)
			conn2, h, err := r.ReadHeader(context.Background(), conn)
			require.NoError(t, err)
			require.NotNil(t, h)
			assert.Equal(t, "", readAll(t, conn2))
			require.NoError(t, <-sent)

			// A context already done: nothing is read.
			_, _, err = r.ReadHeader(ctx, s)
			require.ErrorIs(t, err, context.Canceled)
			dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer dcancel()
			c2, s2 := p.pair(t)
			_, _, err = r.ReadHeader(dctx, s2)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			c2.Close()
		})
	}
}

func TestReadHeaderFragments(t *testing.T) {
	// Every split of header+data into two writes, and one byte per write.
	for _, hdr := range []string{hdrV1, hdrV2} {
		all := hdr + "payload"
		for _, p := range paths {
			t.Run(p.name, func(t *testing.T) {
				splits := [][]string{strings.Split(all, "")}
				for i := 1; i < len(all); i++ {
					splits = append(splits, []string{all[:i], all[i:]})
				}
				for _, parts := range splits {
					c, s := p.pair(t)
					sent := send(c, true, parts...)
					var r proxyproto.Reader
					conn, h, err := r.ReadHeader(context.Background(), s)
					require.NoError(t, err, "%q", parts)
					require.NotNil(t, h)
					assert.Equal(t, src4, h.Source)
					assert.Equal(t, "payload", readAll(t, conn), "%q", parts)
					require.NoError(t, <-sent)
					c.Close()
					s.Close()
				}
			})
		}
	}
}

// TestReadHeaderLongV2: a v2 header longer than the peek buffer (and than
// one TCP segment of 16 KiB... it is 3 KiB) is peeked whole, then the very
// conn comes back; over MaxHeaderLen it is refused.
func TestReadHeaderLongV2(t *testing.T) {
	big := strings.Repeat("x", 3000)
	hdr := v2(0x21, 0x11, ip4Block+tlv(0xe0, big))
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			c, s := p.pair(t)
			sent := send(c, true, hdr+"after")
			var r proxyproto.Reader
			conn, h, err := r.ReadHeader(context.Background(), s)
			require.NoError(t, err)
			v, ok := h.TLV(0xe0)
			require.True(t, ok)
			assert.Equal(t, big, string(v))
			if p.name == "tcp" && runtime.GOOS == "linux" {
				assert.Same(t, s, conn)
			}
			assert.Equal(t, "after", readAll(t, conn))
			require.NoError(t, <-sent)

			c, s = p.pair(t)
			sent = send(c, false, hdr)
			r.MaxHeaderLen = 1024
			conn, _, err = r.ReadHeader(context.Background(), s)
			require.ErrorIs(t, err, proxyproto.ErrInvalid)
			assert.Contains(t, err.Error(), "over the limit of 1024")
			conn.Close()
			<-sent
		})
	}
}

func TestReadHeaderChecksum(t *testing.T) {
	h := proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4,
		TLVs: []proxyproto.TLV{{Type: proxyproto.TypeCRC32C}}}
	good, err := h.Format()
	require.NoError(t, err)
	bad := append([]byte(nil), good...)
	bad[17] ^= 1 // an address byte
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			c, s := p.pair(t)
			sent := send(c, true, string(good)+"x")
			var r proxyproto.Reader
			conn, got, err := r.ReadHeader(context.Background(), s)
			require.NoError(t, err)
			assert.Equal(t, src4, got.Source)
			assert.Equal(t, "x", readAll(t, conn))
			require.NoError(t, <-sent)

			c, s = p.pair(t)
			sent = send(c, true, string(bad)+"x")
			conn, _, err = r.ReadHeader(context.Background(), s)
			require.ErrorIs(t, err, proxyproto.ErrChecksum)
			conn.Close()
			<-sent
		})
	}
}

// TestReadHeaderReset: a reset behind a partial header is an error at once
// (on the MSG_PEEK path the peeked bytes hide it from recv).
func TestReadHeaderReset(t *testing.T) {
	c, s := tcpPair(t, "tcp4")
	_, err := c.Write([]byte("PROXY TCP4 1.2.3.4 "))
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c.SetLinger(0))
	require.NoError(t, c.Close())
	r := proxyproto.Reader{Timeout: 30 * time.Second}
	_, _, err = r.ReadHeader(context.Background(), s)
	require.ErrorIs(t, err, proxyproto.ErrRead)
	require.ErrorIs(t, err, syscall.ECONNRESET)
}

// TestReadHeaderReplay: on the read path, bytes read past a v1 line come
// back through a conn that splice and io.Copy can see through.
func TestReadHeaderReplay(t *testing.T) {
	c, s := net.Pipe()
	defer c.Close()
	sent := send(c, false, hdrV1+"after the header")
	var r proxyproto.Reader
	conn, _, err := r.ReadHeader(context.Background(), s)
	require.NoError(t, err)
	require.NoError(t, <-sent)
	u, ok := conn.(interface {
		Buffered() int
		NetConn() net.Conn
	})
	require.True(t, ok, "%T is a splice.Unwrapper", conn)
	assert.Equal(t, len("after the header"), u.Buffered())
	assert.Same(t, s, u.NetConn())
	_, ok = conn.(io.WriterTo)
	assert.True(t, ok)
	go c.Close()
	b, err := io.ReadAll(conn)
	require.NoError(t, err)
	assert.Equal(t, "after the header", string(b))

	// A v2 header on the read path is read to its exact length: the pipe
	// itself comes back.
	c, s = net.Pipe()
	defer c.Close()
	sent = send(c, false, hdrV2+"after")
	conn, _, err = r.ReadHeader(context.Background(), s)
	require.NoError(t, err)
	assert.Same(t, s, conn)
	buf := make([]byte, 5)
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	assert.Equal(t, "after", string(buf))
	require.NoError(t, <-sent)
	s.Close()
}
