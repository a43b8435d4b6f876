package detect_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/sniffsplice/sniff/detect"
)

// benchDetect measures Detect on a loopback *net.TCPConn holding in. On
// Linux the MSG_PEEK path consumes nothing, so every iteration examines
// the same queued bytes: the cost measured is the peek syscalls plus the
// matchers.
func benchDetect(b *testing.B, in []byte, want detect.Protocol) {
	client, server := tcpPair(b)
	defer client.Close()
	defer server.Close()
	if _, err := client.Write(in); err != nil {
		b.Fatal(err)
	}
	var d detect.Detector
	// Wait until every byte is queued on the server side.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, _, err := d.Detect(context.Background(), server)
		if err != nil {
			b.Fatal(err)
		}
		if res.Protocol == want && (want != detect.Unknown || res.Reason == detect.ReasonNoMatch) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("got %v/%v, want %v", res.Protocol, res.Reason, want)
		}
	}
	ctx := context.Background()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, c, err := d.Detect(ctx, server)
		if err != nil || res.Protocol != want || c != net.Conn(server) {
			b.Fatalf("%v %v %v", res.Protocol, c, err)
		}
	}
}

func BenchmarkDetectHTTP1(b *testing.B) {
	benchDetect(b, []byte("GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"), detect.HTTP1)
}

func BenchmarkDetectHTTP2Preface(b *testing.B) {
	benchDetect(b, []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"), detect.HTTP2)
}

func BenchmarkDetectTLSClientHello(b *testing.B) {
	benchDetect(b, goClientHello(b, "api.example.com", []string{"h2", "http/1.1"}), detect.TLS)
}

func BenchmarkDetectNoMatch(b *testing.B) {
	benchDetect(b, []byte("\x7fELF binary stuff"), detect.Unknown)
}

// benchMatch measures the matchers alone over bytes already in memory.
func benchMatch(b *testing.B, m detect.Matcher, in []byte) {
	var r detect.Result
	if m.Match(in, &r) != detect.Match {
		b.Fatal("no match")
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if m.Match(in, &r) != detect.Match {
			b.Fatal("no match")
		}
	}
}

func BenchmarkMatchTLSClientHello(b *testing.B) {
	benchMatch(b, detect.TLSMatcher(), goClientHello(b, "api.example.com", []string{"h2", "http/1.1"}))
}

func BenchmarkMatchHTTP1(b *testing.B) {
	benchMatch(b, detect.HTTP1Matcher(), []byte("GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: api.example.com\r\n\r\n"))
}

// memConn is an in-memory net.Conn that reads from a bytes.Reader.
type memConn struct{ r bytes.Reader }

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// detectMem runs d over in through c, which it resets, and fails unless
// the Result is want; it returns the connection Detect hands back.
func detectMem(b *testing.B, d *detect.Detector, c *memConn, in []byte, want detect.Protocol) net.Conn {
	c.r.Reset(in)
	res, conn, err := d.Detect(context.Background(), c)
	if err != nil || res.Protocol != want {
		b.Fatal(res.Protocol, err)
	}
	return conn
}

// BenchmarkDetectReplay measures the reading path (any conn that is not a
// Linux *net.TCPConn): the consumed bytes are copied out of the pooled
// buffer into a ReplayConn (2 allocations: the conn and its bytes).
func BenchmarkDetectReplay(b *testing.B) {
	in := []byte("GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	var d detect.Detector
	c := &memConn{}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		detectMem(b, &d, c, in, detect.HTTP1)
	}
}

// BenchmarkGRPCActiveACKFilter measures reading 1 MiB of HTTP/2 DATA
// through the ReplayConn of active gRPC mode: "filtered" while the client's
// SETTINGS ACK has not passed (every frame header is walked), "plain" when
// the ACK was among the consumed bytes (no filter), side by side.
func BenchmarkGRPCActiveACKFilter(b *testing.B) {
	req := h2Request(b, "application/grpc", false)
	var frames bytes.Buffer
	fr := http2.NewFramer(&frames, nil)
	chunk := bytes.Repeat([]byte{0xab}, 16384)
	for range 64 {
		if err := fr.WriteData(1, false, chunk); err != nil {
			b.Fatal(err)
		}
	}
	ack := []byte{0, 0, 0, 4, 1, 0, 0, 0, 0}
	for _, bc := range []struct {
		name string
		in   []byte
		want int // bytes handed on
	}{
		{"filtered", append(append([]byte(nil), req...), frames.Bytes()...), len(req) + frames.Len()},
		{"plain", append(append(append([]byte(nil), req...), ack...), frames.Bytes()...), len(req) + frames.Len()},
	} {
		in := bc.in
		b.Run(bc.name, func(b *testing.B) {
			d := &detect.Detector{GRPC: detect.GRPCActive}
			c := &memConn{}
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				n, err := io.Copy(io.Discard, detectMem(b, d, c, in, detect.GRPC))
				if err != nil || int(n) != bc.want {
					b.Fatal(n, err)
				}
			}
		})
	}
}
