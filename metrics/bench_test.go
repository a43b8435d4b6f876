package metrics_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/splice"
)

// The benchmarks below come in pairs, "off" (nil registry: every hook nil)
// and "on" (a live registry), run side by side in one invocation:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./metrics/

func modes() []struct {
	name string
	reg  *metrics.Registry
} {
	return []struct {
		name string
		reg  *metrics.Registry
	}{{"off", nil}, {"on", metrics.New(metrics.Config{})}}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(tb testing.TB) (client, server *net.TCPConn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	s := <-ch
	if s == nil {
		tb.Fatal("accept failed")
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// relay is client -> Join (with the metrics hooks of reg) -> server.
func relay(b *testing.B, reg *metrics.Registry) (client, server net.Conn, wait func()) {
	c1, p1 := tcpPair(b)
	p2, s2 := tcpPair(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var j splice.Joiner
		mc := reg.OpenConn(metrics.ConnLabels{Direction: metrics.Inbound, Protocol: "opaque"})
		_, err := j.Join(context.Background(), p1, p2, mc.Observer())
		mc.CloseErr(err)
	}()
	return c1, s2, func() { c1.Close(); s2.Close(); <-done }
}

// BenchmarkRelayStream: one-way bulk throughput through Join.
func BenchmarkRelayStream(b *testing.B) {
	for _, m := range modes() {
		b.Run(m.name, func(b *testing.B) {
			client, server, wait := relay(b, m.reg)
			go io.Copy(io.Discard, server)
			msg := make([]byte, 256<<10)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Write(msg); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			wait()
		})
	}
}

// BenchmarkRelayPingPong: 1 KiB request/response exchanges through Join
// (the small-message path, where a per-chunk hook weighs the most).
func BenchmarkRelayPingPong(b *testing.B) {
	for _, m := range modes() {
		b.Run(m.name, func(b *testing.B) {
			client, server, wait := relay(b, m.reg)
			const size = 1 << 10
			go func() {
				buf := make([]byte, size)
				for {
					if _, err := io.ReadFull(server, buf); err != nil {
						return
					}
					if _, err := server.Write(buf); err != nil {
						return
					}
				}
			}()
			msg := make([]byte, size)
			b.SetBytes(2 * size)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(client, msg); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			wait()
		})
	}
}

// BenchmarkDetect: Detect over a loopback *net.TCPConn holding an HTTP/1
// request (MSG_PEEK consumes nothing, so every iteration sees the same
// bytes), with the OnResult hook off and on.
func BenchmarkDetect(b *testing.B) {
	for _, m := range modes() {
		b.Run(m.name, func(b *testing.B) {
			client, server := tcpPair(b)
			defer client.Close()
			defer server.Close()
			if _, err := client.Write([]byte("GET /api/v1/items HTTP/1.1\r\nHost: api.example.com\r\n\r\n")); err != nil {
				b.Fatal(err)
			}
			d := detect.Detector{OnResult: m.reg.DetectHook(metrics.Inbound)}
			ctx := context.Background()
			deadline := time.Now().Add(10 * time.Second)
			for { // wait until the bytes are queued
				res, _, err := d.Detect(ctx, server)
				if err != nil {
					b.Fatal(err)
				}
				if res.Protocol == detect.HTTP1 {
					break
				}
				if time.Now().After(deadline) {
					b.Fatal("no HTTP/1 detected")
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				res, _, err := d.Detect(ctx, server)
				if err != nil || res.Protocol != detect.HTTP1 {
					b.Fatal(res.Protocol, err)
				}
			}
		})
	}
}

// BenchmarkConnection: a whole proxied connection per iteration — accept,
// Detect, Join to the upstream, a 1 KiB exchange, close — with every
// per-connection hook off and on.
func BenchmarkConnection(b *testing.B) {
	for _, m := range modes() {
		b.Run(m.name, func(b *testing.B) {
			up, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer up.Close()
			go func() {
				for {
					c, err := up.Accept()
					if err != nil {
						return
					}
					go func() { io.Copy(c, c); c.Close() }()
				}
			}()
			front, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer front.Close()
			d := &detect.Detector{OnResult: m.reg.DetectHook(metrics.Inbound)}
			var j splice.Joiner
			go func() {
				for {
					c, err := front.Accept()
					if err != nil {
						return
					}
					go func() {
						res, c, err := d.Detect(context.Background(), c)
						if err != nil {
							c.Close()
							return
						}
						mc := m.reg.OpenConn(metrics.ConnLabelsFor(metrics.Inbound, res.Protocol))
						u, err := net.Dial("tcp", up.Addr().String())
						if err != nil {
							c.Close()
							mc.CloseErr(err)
							return
						}
						_, err = j.Join(context.Background(), c, u, mc.Observer())
						mc.CloseErr(err)
					}()
				}
			}()
			msg := make([]byte, 1<<10)
			copy(msg, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			b.ReportAllocs()
			for b.Loop() {
				c, err := net.Dial("tcp", front.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, msg); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkHooksPerConnection: everything metrics does for one proxied
// connection — the detection result, OpenConn, one chunk each way through
// the splice.Observer, CloseErr — without any I/O. "hook" goes through
// DetectHook as detect.Detector calls it, which includes passing the
// 864-byte detect.Result by value (detect's OnResult signature); "direct"
// records the same detection with ObserveDetection.
func BenchmarkHooksPerConnection(b *testing.B) {
	reg := metrics.New(metrics.Config{})
	hook := reg.DetectHook(metrics.Inbound)
	res := detect.Result{Protocol: detect.HTTP1, Reason: detect.ReasonMatched, Bytes: 40, Duration: 20 * time.Microsecond}
	perConn := func() {
		mc := reg.OpenConn(metrics.ConnLabelsFor(metrics.Inbound, res.Protocol))
		obs := mc.Observer()
		obs.Transferred(splice.AToB, 1024)
		obs.Transferred(splice.BToA, 1024)
		mc.CloseErr(nil)
	}
	b.Run("hook", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hook(res)
			perConn()
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reg.ObserveDetection(metrics.Inbound, string(res.Protocol), "matched", res.Duration)
			perConn()
		}
	})
}

// BenchmarkCounters: single counter updates (must be 0 allocs/op).
func BenchmarkCounters(b *testing.B) {
	reg := metrics.New(metrics.Config{Ports: []uint16{3306}})
	l := metrics.ConnLabels{Direction: metrics.Inbound, Protocol: "HTTP/2", TLS: metrics.TLSTrue}
	mc := reg.OpenConn(l)
	b.Run("Conn.Read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mc.Read(1500)
		}
	})
	b.Run("Conn.Read/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				mc.Read(1500)
			}
		})
	})
	b.Run("OpenConn+Close", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reg.OpenConn(l).Close("ECONNRESET")
		}
	})
	b.Run("ObserveDetection", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reg.ObserveDetection(metrics.Inbound, "HTTP/2", "matched", 30*time.Microsecond)
		}
	})
	b.Run("ObserveDecision", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reg.ObserveDecision(metrics.Inbound, "opaque", 3306)
		}
	})
	b.Run("ObserveHandshake", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reg.ObserveHandshake(metrics.Inbound, metrics.OutcomeSuccess, "", 2*time.Millisecond)
		}
	})
	b.Run("ObserveTransportHeader", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			reg.ObserveTransportHeader(metrics.HeaderWritten, "HTTP/2")
		}
	})
	b.Run("Snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = reg.Snapshot()
		}
	})
}

// BenchmarkHTTPHandler: the middleware's cost per request on an in-memory
// request, off (the bare handler) and on.
func BenchmarkHTTPHandler(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	for _, m := range modes() {
		b.Run(m.name, func(b *testing.B) {
			wrapped := m.reg.HTTPHandler(h, metrics.HTTPOptions{})
			req := httptest.NewRequest("GET", "http://svc.test/", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				wrapped.ServeHTTP(w, req)
			}
		})
	}
}
