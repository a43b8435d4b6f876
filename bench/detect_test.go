package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/soheilhy/cmux"

	"github.com/sniffsplice/sniff/detect"
)

// Inputs, the same bytes for both sides of every comparison.
var (
	inHTTP1   = []byte("GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	inHTTP2   = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	inNoMatch = []byte("\x7fELF\x02\x01\x01\x00 binary protocol bytes that match nothing at all")
)

// goClientHello captures the ClientHello of Go's crypto/tls client (Go 1.26
// defaults: TLS 1.3 with the X25519MLKEM768 key share, about 1.5 KiB).
func goClientHello(tb testing.TB) []byte {
	tb.Helper()
	c, s := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(c, &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}, InsecureSkipVerify: true}).Handshake()
	}()
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		n, err := s.Read(tmp)
		buf = append(buf, tmp[:n]...)
		var info detect.TLSInfo
		if detect.ParseClientHello(buf, &info) == detect.Match {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	s.Close()
	c.Close()
	<-done
	return buf
}

// sniffMatch runs one sniff matcher over in.
func sniffMatch(b *testing.B, m detect.Matcher, in []byte, want detect.Verdict) {
	var r detect.Result
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if m.Match(in, &r) != want {
			b.Fatal("unexpected verdict")
		}
	}
}

// cmuxMatch runs one cmux matcher over in as cmux does: the matcher reads
// the sniffed bytes through an io.Reader (reused here, as cmux reuses its
// buffered reader).
func cmuxMatch(b *testing.B, m cmux.Matcher, in []byte, want bool) {
	rd := bytes.NewReader(in)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(in)
		if m(rd) != want {
			b.Fatal("unexpected result")
		}
	}
}

// sniffIndex runs the matchers ms over in in order and returns the index
// of the one that matched, -1 when none did, and -2 when one asked for more
// bytes (every input here is complete, so callers treat that as a failure).
func sniffIndex(ms []detect.Matcher, in []byte, r *detect.Result) int {
	for i, m := range ms {
		switch m.Match(in, r) {
		case detect.Match:
			return i
		case detect.NeedMore:
			return -2
		}
	}
	return -1
}

// cmuxIndex runs the cmux matchers ms over in in order, each from the
// start through rd (reset per matcher, as cmux rewinds its buffer), and
// returns the index of the one that matched, or -1.
func cmuxIndex(ms []cmux.Matcher, rd *bytes.Reader, in []byte) int {
	for i, m := range ms {
		rd.Reset(in)
		if m(rd) {
			return i
		}
	}
	return -1
}

// sniffChain classifies in with the default matchers in Detector order
// and reports the index of the one that matched, as cmuxChain does.
func sniffChain(b *testing.B, in []byte, want int) {
	ms := detect.DefaultMatchers()
	var r detect.Result
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if got := sniffIndex(ms, in, &r); got != want {
			b.Fatalf("got %d", got)
		}
	}
}

// cmuxChain classifies in with cmux's equivalent matchers in the same order.
func cmuxChain(b *testing.B, in []byte, want int) {
	ms := []cmux.Matcher{cmux.HTTP2(), cmux.HTTP1(), cmux.TLS()}
	rd := bytes.NewReader(in)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if got := cmuxIndex(ms, rd, in); got != want {
			b.Fatalf("got %d", got)
		}
	}
}

// BenchmarkMatchers compares each sniff matcher with cmux's matcher for
// the same protocol on the same bytes, and the full default chains.
func BenchmarkMatchers(b *testing.B) {
	hello := goClientHello(b)
	b.Run("HTTP1/sniff", func(b *testing.B) { sniffMatch(b, detect.HTTP1Matcher(), inHTTP1, detect.Match) })
	b.Run("HTTP1/cmux.HTTP1", func(b *testing.B) { cmuxMatch(b, cmux.HTTP1(), inHTTP1, true) })
	b.Run("HTTP1/cmux.HTTP1Fast", func(b *testing.B) { cmuxMatch(b, cmux.HTTP1Fast(), inHTTP1, true) })
	b.Run("HTTP2/sniff", func(b *testing.B) { sniffMatch(b, detect.HTTP2Matcher(), inHTTP2, detect.Match) })
	b.Run("HTTP2/cmux.HTTP2", func(b *testing.B) { cmuxMatch(b, cmux.HTTP2(), inHTTP2, true) })
	b.Run("TLS/sniff", func(b *testing.B) { sniffMatch(b, detect.TLSMatcher(), hello, detect.Match) })
	b.Run("TLS/cmux.TLS", func(b *testing.B) { cmuxMatch(b, cmux.TLS(), hello, true) })
	b.Run("TLSRecord/sniff", func(b *testing.B) { sniffMatch(b, detect.TLSRecordMatcher(), hello, detect.Match) })
	b.Run("NoMatch/sniff", func(b *testing.B) { sniffChain(b, inNoMatch, -1) })
	b.Run("NoMatch/cmux", func(b *testing.B) { cmuxChain(b, inNoMatch, -1) })
	b.Run("ChainHTTP1/sniff", func(b *testing.B) { sniffChain(b, inHTTP1, 1) })
	b.Run("ChainHTTP1/cmux", func(b *testing.B) { cmuxChain(b, inHTTP1, 1) })
	b.Run("ChainTLS/sniff", func(b *testing.B) { sniffChain(b, hello, 2) })
	b.Run("ChainTLS/cmux", func(b *testing.B) { cmuxChain(b, hello, 2) })
}

// memConn is an in-memory net.Conn that reads from a reader and discards
// writes, for feeding bytes to crypto/tls.
type memConn struct{ r bytes.Reader }

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

var errStop = errors.New("stop after ClientHello")

// BenchmarkClientHello compares sniff's ClientHello parser with crypto/tls
// parsing the same hello: a tls.Server whose GetConfigForClient captures the
// ClientHelloInfo (SNI, ALPN, versions) and stops the handshake.
func BenchmarkClientHello(b *testing.B) {
	hello := goClientHello(b)
	b.Run("sniff", func(b *testing.B) {
		var info detect.TLSInfo
		b.SetBytes(int64(len(hello)))
		b.ReportAllocs()
		for b.Loop() {
			if detect.ParseClientHello(hello, &info) != detect.Match || !info.HasALPN("h2") {
				b.Fatal("no match")
			}
		}
	})
	b.Run("crypto-tls", func(b *testing.B) {
		var sni string
		var alpn []string
		cfg := &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			sni, alpn = chi.ServerName, chi.SupportedProtos
			return nil, errStop
		}}
		c := &memConn{}
		b.SetBytes(int64(len(hello)))
		b.ReportAllocs()
		for b.Loop() {
			c.r.Reset(hello)
			err := tls.Server(c, cfg).HandshakeContext(context.Background())
			if !errors.Is(err, errStop) || sni != "api.example.com" || len(alpn) != 2 {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDetect measures the whole Detector on a loopback *net.TCPConn
// (the Linux MSG_PEEK path: every iteration peeks the same queued bytes).
func BenchmarkDetect(b *testing.B) {
	hello := goClientHello(b)
	for _, tc := range []struct {
		name string
		in   []byte
		want detect.Protocol
	}{
		{"HTTP1", inHTTP1, detect.HTTP1},
		{"HTTP2Preface", inHTTP2, detect.HTTP2},
		{"TLSClientHello", hello, detect.TLS},
		{"NoMatch", inNoMatch, detect.Unknown},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer server.Close()
			if _, err := client.Write(tc.in); err != nil {
				b.Fatal(err)
			}
			var d detect.Detector
			for deadline := time.Now().Add(10 * time.Second); ; {
				res, _, err := d.Detect(context.Background(), server)
				if err != nil {
					b.Fatal(err)
				}
				if res.Protocol == tc.want && res.Bytes == len(tc.in) || tc.want == detect.Unknown && res.Reason == detect.ReasonNoMatch {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("got %v", res.Protocol)
				}
			}
			ctx := context.Background()
			b.SetBytes(int64(len(tc.in)))
			b.ReportAllocs()
			for b.Loop() {
				res, c, err := d.Detect(ctx, server)
				if err != nil || res.Protocol != tc.want || c != server {
					b.Fatal(res.Protocol, err)
				}
			}
		})
	}
}

// interleave runs a and b alternately in chunks inside one benchmark, so
// both see the same machine load, and reports each one's ns/op and the
// ratio b/a as "x-faster" (how many times faster a is than b).
//
// Each side is a func(n) that runs its operation n times in a plain loop:
// the harness adds no call per operation (a closure call per operation
// would add a fixed ~2 ns to both sides, which matters next to a 5 ns
// matcher). Inside the loops both sides pay what their library's caller
// pays: an interface call to a detect.Matcher, a func value call (and a
// Reset of the reader it reads from) for a cmux.Matcher.
func interleave(bm *testing.B, a, b func(n int)) {
	const chunk = 64
	var ta, tb time.Duration
	var n int
	for bm.Loop() {
		t0 := time.Now()
		a(chunk)
		t1 := time.Now()
		b(chunk)
		tb += time.Since(t1)
		ta += t1.Sub(t0)
		n += chunk
	}
	bm.ReportMetric(float64(ta.Nanoseconds())/float64(n), "sniff-ns/op")
	bm.ReportMetric(float64(tb.Nanoseconds())/float64(n), "other-ns/op")
	bm.ReportMetric(float64(tb)/float64(ta), "x-faster")
}

// BenchmarkSideBySide measures sniff and the compared implementation
// alternately on the same bytes (same load, same run) and reports the
// ratio.
func BenchmarkSideBySide(b *testing.B) {
	hello := goClientHello(b)
	var r detect.Result
	rd := bytes.NewReader(nil)
	matchSniff := func(m detect.Matcher, in []byte) func(int) {
		return func(n int) {
			for range n {
				if m.Match(in, &r) != detect.Match {
					b.Fatal("no match")
				}
			}
		}
	}
	matchCmux := func(m cmux.Matcher, in []byte) func(int) {
		return func(n int) {
			for range n {
				rd.Reset(in)
				if !m(rd) {
					b.Fatal("no match")
				}
			}
		}
	}
	// Both chains report the index of the matcher that matched, so the
	// loops around the matchers are the same on both sides.
	chainSniff := func(ms []detect.Matcher, in []byte, want int) func(int) {
		return func(n int) {
			for range n {
				if got := sniffIndex(ms, in, &r); got != want {
					b.Fatal(got)
				}
			}
		}
	}
	chainCmux := func(in []byte, want int) func(int) {
		ms := []cmux.Matcher{cmux.HTTP2(), cmux.HTTP1(), cmux.TLS()}
		return func(n int) {
			for range n {
				if got := cmuxIndex(ms, rd, in); got != want {
					b.Fatal(got)
				}
			}
		}
	}
	// detect.DefaultMatchers, and the same chain with the
	// classification-only TLS matcher.
	chain := detect.DefaultMatchers()
	chainRecord := []detect.Matcher{detect.HTTP2Matcher(), detect.HTTP1Matcher(), detect.TLSRecordMatcher()}
	b.Run("HTTP1-vs-cmux.HTTP1", func(b *testing.B) {
		interleave(b, matchSniff(detect.HTTP1Matcher(), inHTTP1), matchCmux(cmux.HTTP1(), inHTTP1))
	})
	b.Run("HTTP1-vs-cmux.HTTP1Fast", func(b *testing.B) {
		interleave(b, matchSniff(detect.HTTP1Matcher(), inHTTP1), matchCmux(cmux.HTTP1Fast(), inHTTP1))
	})
	b.Run("HTTP2-vs-cmux.HTTP2", func(b *testing.B) {
		interleave(b, matchSniff(detect.HTTP2Matcher(), inHTTP2), matchCmux(cmux.HTTP2(), inHTTP2))
	})
	b.Run("TLS-vs-cmux.TLS", func(b *testing.B) {
		interleave(b, matchSniff(detect.TLSMatcher(), hello), matchCmux(cmux.TLS(), hello))
	})
	b.Run("TLSRecord-vs-cmux.TLS", func(b *testing.B) {
		interleave(b, matchSniff(detect.TLSRecordMatcher(), hello), matchCmux(cmux.TLS(), hello))
	})
	b.Run("ChainHTTP1-vs-cmux", func(b *testing.B) {
		interleave(b, chainSniff(chain, inHTTP1, 1), chainCmux(inHTTP1, 1))
	})
	b.Run("ChainHTTP2-vs-cmux", func(b *testing.B) {
		interleave(b, chainSniff(chain, inHTTP2, 0), chainCmux(inHTTP2, 0))
	})
	b.Run("ChainTLS-vs-cmux", func(b *testing.B) {
		interleave(b, chainSniff(chain, hello, 2), chainCmux(hello, 2))
	})
	b.Run("ChainTLSRecord-vs-cmux", func(b *testing.B) {
		interleave(b, chainSniff(chainRecord, hello, 2), chainCmux(hello, 2))
	})
	b.Run("ChainNoMatch-vs-cmux", func(b *testing.B) {
		interleave(b, chainSniff(chain, inNoMatch, -1), chainCmux(inNoMatch, -1))
	})
	b.Run("ClientHello-vs-crypto-tls", func(b *testing.B) {
		var info detect.TLSInfo
		var sni string
		cfg := &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			sni = chi.ServerName
			return nil, errStop
		}}
		c := &memConn{}
		interleave(b, func(n int) {
			for range n {
				if detect.ParseClientHello(hello, &info) != detect.Match || info.ServerName() == "" {
					b.Fatal("no match")
				}
			}
		}, func(n int) {
			for range n {
				c.r.Reset(hello)
				if err := tls.Server(c, cfg).HandshakeContext(context.Background()); !errors.Is(err, errStop) || sni == "" {
					b.Fatal(err)
				}
			}
		})
	})
}
