package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	gpp "github.com/pires/go-proxyproto"

	"github.com/sniffsplice/sniff/proxyproto"
	"github.com/sniffsplice/sniff/splice"
)

// proxyHeaders are the headers both libraries parse in the PROXY
// benchmarks: a v1 line, a bare v2 header, and a v2 header with what
// HAProxy sends behind a TLS frontend (ALPN, authority, unique ID, SSL with
// its sub-TLVs, CRC32C).
func proxyHeaders(tb testing.TB) []struct {
	name string
	b    []byte
} {
	src4, dst4 := netip.MustParseAddrPort("192.0.2.1:51234"), netip.MustParseAddrPort("198.51.100.2:443")
	src6, dst6 := netip.MustParseAddrPort("[2001:db8::1]:51234"), netip.MustParseAddrPort("[2001:db8::2]:443")
	ssl := proxyproto.SSL{Client: 7, TLVs: []proxyproto.TLV{
		{Type: proxyproto.SubtypeSSLVersion, Value: []byte("TLSv1.3")},
		{Type: proxyproto.SubtypeSSLCN, Value: []byte("client.test")},
		{Type: proxyproto.SubtypeSSLCipher, Value: []byte("TLS_AES_256_GCM_SHA384")},
		{Type: proxyproto.SubtypeSSLSigAlg, Value: []byte("ecdsa-with-SHA256")},
		{Type: proxyproto.SubtypeSSLKeyAlg, Value: []byte("EC256")},
	}}
	hs := []proxyproto.Header{
		{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4},
		{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4, Source: src4, Destination: dst4},
		{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP6, Source: src6, Destination: dst6, TLVs: []proxyproto.TLV{
			{Type: proxyproto.TypeCRC32C},
			{Type: proxyproto.TypeALPN, Value: []byte("h2")},
			{Type: proxyproto.TypeAuthority, Value: []byte("api.example.com")},
			{Type: proxyproto.TypeUniqueID, Value: []byte("uid-2001:db8::1-51234")},
			ssl.TLV(),
		}},
	}
	names := []string{"v1-tcp4", "v2-tcp4", "v2-tcp6-haproxy-tlvs"}
	out := make([]struct {
		name string
		b    []byte
	}, len(hs))
	for i := range hs {
		b, err := hs[i].Format()
		if err != nil {
			tb.Fatal(err)
		}
		out[i].name, out[i].b = names[i], b
	}
	return out
}

// BenchmarkPROXYParse: parsing a header from bytes, sniff's Parse against
// go-proxyproto's Read (from a bufio.Reader reset over the same bytes, as
// its Conn reads) followed by its TLVs() (what a caller does to see the
// TLVs; sniff's Parse splits them, checks the SSL TLV and verifies the
// CRC32C, which go-proxyproto does not), interleaved in one run.
func BenchmarkPROXYParse(b *testing.B) {
	for _, h := range proxyHeaders(b) {
		b.Run(h.name, func(b *testing.B) {
			rd := bytes.NewReader(nil)
			br := bufio.NewReaderSize(rd, 256)
			interleave(b, func(n int) {
				for range n {
					if _, _, err := proxyproto.Parse(h.b); err != nil {
						b.Fatal(err)
					}
				}
			}, func(n int) {
				for range n {
					rd.Reset(h.b)
					br.Reset(rd)
					hdr, err := gpp.Read(br)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := hdr.TLVs(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkPROXYParseAllocs: the same two parses on their own, for B/op
// and allocs/op.
func BenchmarkPROXYParseAllocs(b *testing.B) {
	for _, h := range proxyHeaders(b) {
		b.Run(h.name+"/sniff", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := proxyproto.Parse(h.b); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(h.name+"/go-proxyproto", func(b *testing.B) {
			b.ReportAllocs()
			rd := bytes.NewReader(nil)
			br := bufio.NewReaderSize(rd, 256)
			for b.Loop() {
				rd.Reset(h.b)
				br.Reset(rd)
				hdr, err := gpp.Read(br)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := hdr.TLVs(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// tcpPairB returns a connected loopback pair.
func tcpPairB(b *testing.B) (client, server *net.TCPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s := <-ch
	if s == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// BenchmarkPROXYHeaderOnConn: what a server pays per connection to take
// the header off a real loopback TCP connection and read the first byte
// after it. The client writes header + 1 byte; the server reads the header
// (sniff: ReadHeader, which peeks and then consumes exactly the header,
// and hands back the *net.TCPConn; go-proxyproto: NewConn and the first
// Read, one read into its 256-byte bufio.Reader), reads the byte and
// answers one; the client reads the answer. Interleaved, one connection
// pair per library, reused.
func BenchmarkPROXYHeaderOnConn(b *testing.B) {
	for _, h := range proxyHeaders(b) {
		b.Run(h.name, func(b *testing.B) {
			msg := append(append([]byte(nil), h.b...), 'x')
			pingPong := func(c, s *net.TCPConn, serve func() (net.Conn, error)) func(int) {
				one := make([]byte, 1)
				return func(n int) {
					for range n {
						if _, err := c.Write(msg); err != nil {
							b.Fatal(err)
						}
						conn, err := serve()
						if err != nil {
							b.Fatal(err)
						}
						if _, err := io.ReadFull(conn, one); err != nil || one[0] != 'x' {
							b.Fatal(err, one)
						}
						if _, err := s.Write(one); err != nil {
							b.Fatal(err)
						}
						if _, err := io.ReadFull(c, one); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			c1, s1 := tcpPairB(b)
			c2, s2 := tcpPairB(b)
			var r proxyproto.Reader
			ctx := context.Background()
			interleave(b, pingPong(c1, s1, func() (net.Conn, error) {
				conn, _, err := r.ReadHeader(ctx, s1)
				return conn, err
			}), pingPong(c2, s2, func() (net.Conn, error) {
				pc := gpp.NewConn(s2)
				return pc, nil
			}))
		})
	}
}

// BenchmarkPROXYRelay: relay throughput after the header. A client sends a
// v2 header and 64 MiB through a relay to a sink; the relay takes the
// header off (sniff: ReadHeader, the *net.TCPConn back; go-proxyproto: its
// Conn) and joins the connection to the sink with the library's relay,
// splice.Joiner (zero-copy splice(2) for a *net.TCPConn or a connection it
// can see through; a wrapper it cannot is copied through a buffer). The
// "io.Copy" rows join with two io.Copy calls instead, where go-proxyproto's
// WriteTo and ReadFrom hand off to the inner connection and so reach
// splice(2) as well: the control. Interleaved transfer by transfer; reports
// each side's MB/s, the ratio, and the process CPU per GiB of each side
// (client and sink included, the same on both sides).
func BenchmarkPROXYRelay(b *testing.B) {
	const size = 64 << 20
	hdr := proxyHeaders(b)[1].b
	payload := make([]byte, size)
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				buf := make([]byte, 256<<10) // large reads: the sink costs both sides little, and alike
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				c.Close()
			})
		}
	})

	type relayFunc func(client net.Conn, up *net.TCPConn) error
	joinerRelay := func(c, up net.Conn) error {
		var j splice.Joiner
		_, err := j.Join(context.Background(), c, up, nil)
		return err
	}
	copyRelay := func(c net.Conn, up *net.TCPConn) error {
		errc := make(chan error, 1)
		go func() {
			_, err := io.Copy(c, up)
			errc <- err
		}()
		_, err := io.Copy(up, c)
		_ = up.CloseWrite()
		if err == nil {
			err = <-errc
		} else {
			<-errc
		}
		c.Close()
		up.Close()
		return err
	}
	sniffSide := func(join func(net.Conn, *net.TCPConn) error) relayFunc {
		return func(c net.Conn, up *net.TCPConn) error {
			var r proxyproto.Reader
			conn, _, err := r.ReadHeader(context.Background(), c)
			if err != nil {
				return err
			}
			return join(conn, up)
		}
	}
	theirSide := func(join func(net.Conn, *net.TCPConn) error) relayFunc {
		return func(c net.Conn, up *net.TCPConn) error {
			pc := gpp.NewConn(c)
			if _, err := pc.Read(nil); err != nil { // the header, as a server's first Read would
				return err
			}
			return join(pc, up)
		}
	}
	// transfer runs one client -> relay -> sink transfer of the payload.
	transfer := func(relay relayFunc) (time.Duration, time.Duration) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		done := make(chan error, 1)
		cpu0 := cpuTime()
		t0 := time.Now()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			up, err := net.Dial("tcp", sink.Addr().String())
			if err != nil {
				c.Close()
				done <- err
				return
			}
			done <- relay(c, up.(*net.TCPConn))
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(hdr); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(payload); err != nil {
			b.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			b.Fatal(err)
		}
		c.Close()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			b.Fatal(err)
		}
		return time.Since(t0), cpuTime() - cpu0
	}
	for _, tc := range []struct {
		name       string
		ours, them relayFunc
	}{
		{"splice.Joiner", sniffSide(func(c net.Conn, up *net.TCPConn) error { return joinerRelay(c, up) }),
			theirSide(func(c net.Conn, up *net.TCPConn) error { return joinerRelay(c, up) })},
		{"io.Copy", sniffSide(copyRelay), theirSide(copyRelay)},
		{"control-sniff-wrapped", sniffSide(func(c net.Conn, up *net.TCPConn) error { return joinerRelay(c, up) }),
			sniffSide(func(c net.Conn, up *net.TCPConn) error { return joinerRelay(struct{ net.Conn }{c}, up) })},
	} {
		b.Run(tc.name, func(b *testing.B) {
			transfer(tc.ours) // warm up: the payload's pages, the sink, the pools
			transfer(tc.them)
			var ta, tb, ca, cb time.Duration
			n := 0
			for b.Loop() {
				// Alternate which side goes first, so neither always
				// follows the other.
				first, second := tc.ours, tc.them
				if n%2 == 1 {
					first, second = second, first
				}
				w1, c1 := transfer(first)
				w2, c2 := transfer(second)
				if n%2 == 1 {
					w1, c1, w2, c2 = w2, c2, w1, c1
				}
				ta, ca, tb, cb = ta+w1, ca+c1, tb+w2, cb+c2
				n++
			}
			mb := float64(size) / 1e6 * float64(n)
			gib := float64(size) / (1 << 30) * float64(n)
			b.ReportMetric(mb/ta.Seconds(), "sniff-MB/s")
			b.ReportMetric(mb/tb.Seconds(), "other-MB/s")
			b.ReportMetric(tb.Seconds()/ta.Seconds(), "x-faster")
			b.ReportMetric(ca.Seconds()/gib, "sniff-cpu-s/GiB")
			b.ReportMetric(cb.Seconds()/gib, "other-cpu-s/GiB")
		})
	}
}
