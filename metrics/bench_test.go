package metrics_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
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
		mc := reg.OpenConn(metrics.ConnLabels{Direction: opaque.Inbound, Protocol: "opaque"})
		st, _ := j.Join(context.Background(), p1, p2, mc.Observer())
		mc.End(st)
	}()
	return c1, s2, func() { c1.Close(); s2.Close(); <-done }
}

// An op is one unit of benchmarked work; setups return it and a cleanup.
type setup func(b *testing.B, reg *metrics.Registry) (op func(), bytes int64, cleanup func())

// streamOp sends 1 MiB one way through a relay and waits for the
// receiver's one-byte acknowledgement, so that no work of one op spills
// into the next (or into the other pipeline of BenchmarkMetricsCost).
func streamOp(b *testing.B, reg *metrics.Registry) (func(), int64, func()) {
	client, server, wait := relay(b, reg)
	const size = 1 << 20
	go func() {
		ack := []byte{1}
		for {
			if _, err := io.CopyN(io.Discard, server, size); err != nil {
				return
			}
			if _, err := server.Write(ack); err != nil {
				return
			}
		}
	}()
	msg := make([]byte, size)
	ack := make([]byte, 1)
	return func() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, ack); err != nil {
			b.Fatal(err)
		}
	}, size, wait
}

// pingPongOp exchanges 1 KiB each way through a relay (the small-message
// path, where a per-chunk hook weighs the most).
func pingPongOp(b *testing.B, reg *metrics.Registry) (func(), int64, func()) {
	client, server, wait := relay(b, reg)
	const size = 1 << 10
	go testnet.EchoMessages(server, size)
	msg := make([]byte, size)
	return func() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, msg); err != nil {
			b.Fatal(err)
		}
	}, 2 * size, wait
}

// detectOp runs Detect over a loopback *net.TCPConn holding an HTTP/1
// request (MSG_PEEK consumes nothing, so every call sees the same bytes),
// with the OnResult hook of reg (nil when reg is nil).
func detectOp(b *testing.B, reg *metrics.Registry) (func(), int64, func()) {
	client, server := tcpPair(b)
	req := []byte("GET /api/v1/items HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
	if _, err := client.Write(req); err != nil {
		b.Fatal(err)
	}
	d := detect.Detector{OnResult: reg.DetectHook(opaque.Inbound)}
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
	return func() {
		res, _, err := d.Detect(ctx, server)
		if err != nil || res.Protocol != detect.HTTP1 {
			b.Fatal(res.Protocol, err)
		}
	}, int64(len(req)), func() { client.Close(); server.Close() }
}

// connectionOp is a whole proxied connection — accept, Detect, dial the
// upstream, Join, a 1 KiB exchange, close — with every per-connection hook
// of reg.
func connectionOp(b *testing.B, reg *metrics.Registry) (func(), int64, func()) {
	up := testnet.Serve(b, func(c net.Conn) { io.Copy(c, c) })
	d := &detect.Detector{OnResult: reg.DetectHook(opaque.Inbound)}
	var j splice.Joiner
	front := testnet.Serve(b, func(c net.Conn) {
		res, c, err := d.Detect(context.Background(), c)
		if err != nil {
			c.Close()
			return
		}
		mc := reg.OpenConn(metrics.ConnLabelsFor(opaque.Inbound, res.Protocol, false))
		u, err := net.Dial("tcp", up.Addr().String())
		if err != nil {
			c.Close()
			mc.End(splice.Stats{Err: err})
			return
		}
		st, _ := j.Join(context.Background(), c, u, mc.Observer())
		mc.End(st)
	})
	msg := make([]byte, 1<<10)
	copy(msg, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	return func() {
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
		}, int64(2 * len(msg)), func() {
			// The handlers are waited for when the benchmark ends.
			front.Close()
			up.Close()
		}
}

// httpOp is one keep-alive HTTP/1.1 request over loopback from a net/http
// client to a net/http server, both wrapped by reg (HTTPHandler and
// RoundTripper); with a nil reg both are bare.
func httpOp(b *testing.B, reg *metrics.Registry) (func(), int64, func()) {
	body := make([]byte, 1<<10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	srv := httptest.NewServer(reg.HTTPHandler(h, metrics.HTTPOptions{Direction: opaque.Inbound}))
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	client := &http.Client{Transport: reg.RoundTripper(tr, metrics.HTTPOptions{Direction: opaque.Outbound})}
	url := srv.URL + "/items"
	return func() {
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}, int64(len(body)), func() {
			tr.CloseIdleConnections()
			srv.Close()
		}
}

var setups = []struct {
	name  string
	setup setup
	batch int // ops per timed sample in BenchmarkMetricsCost (a few ms)
}{
	{"RelayStream", streamOp, 2},
	{"RelayPingPong", pingPongOp, 32},
	{"Detect", detectOp, 512},
	{"Connection", connectionOp, 8},
	{"HTTPRequest", httpOp, 32},
}

// loopCPU runs f in b.Loop on a locked OS thread and reports, besides
// ns/op, cpu-ns/op: the thread's CPU time per op, which leaves out the
// time the thread waited for a CPU on a busy machine.
func loopCPU(b *testing.B, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	c0 := threadCPU(b)
	n := 0
	for b.Loop() {
		f()
		n++
	}
	b.ReportMetric(float64((threadCPU(b)-c0).Nanoseconds())/float64(n), "cpu-ns/op")
}

// BenchmarkMetricsOffOn runs each workload with metrics off (nil registry:
// every hook nil) and on (a live registry), as separate sub-benchmarks.
func BenchmarkMetricsOffOn(b *testing.B) {
	for _, s := range setups {
		for _, m := range modes() {
			b.Run(s.name+"/"+m.name, func(b *testing.B) {
				op, n, cleanup := s.setup(b, m.reg)
				b.SetBytes(n)
				b.ReportAllocs()
				for b.Loop() {
					op()
				}
				b.StopTimer()
				cleanup()
			})
		}
	}
}

// BenchmarkMetricsCost measures the cost of metrics on a loaded, shared
// machine: both pipelines (off and on) run in the same benchmark and take
// turns in batches of a few milliseconds, in alternating order, so load
// changes hit both alike. Besides wall time it measures the CPU time of the
// whole process (every goroutine: client, relay, server) per op, which a
// busy machine disturbs far less than wall time. It reports both per op and
// the relative costs: cost-% (wall) and cpu-cost-% = on/off - 1.
//
// The "control" variant runs two pipelines with metrics off: its costs
// show the measurement's noise floor (and any bias between the two
// pipelines), against which the "on" variant is read.
func BenchmarkMetricsCost(b *testing.B) {
	for _, s := range setups {
		for _, variant := range []string{"on", "control"} {
			b.Run(s.name+"/"+variant, func(b *testing.B) {
				costRun(b, s.setup, s.batch, variant == "on")
			})
		}
	}
}

// costRun measures one pair of pipelines; the second has metrics on when on
// is set (else both are off: the control).
func costRun(b *testing.B, setup setup, n int, on bool) {
	var reg *metrics.Registry
	if on {
		reg = metrics.New(metrics.Config{})
	}
	offOp, _, offClean := setup(b, nil)
	onOp, _, onClean := setup(b, reg)
	var wall, cpu [2]time.Duration // [0] off, [1] on (or the control's twin)
	batch := func(i int, op func()) {
		c0, t0 := cpuTime(b), time.Now()
		for range n {
			op()
		}
		wall[i] += time.Since(t0)
		cpu[i] += cpuTime(b) - c0
	}
	var rounds int
	for b.Loop() {
		if rounds%2 == 0 {
			batch(0, offOp)
			batch(1, onOp)
		} else {
			batch(1, onOp)
			batch(0, offOp)
		}
		rounds++
	}
	b.StopTimer()
	offClean()
	onClean()
	ops := float64(rounds * n)
	b.ReportMetric(float64(wall[0].Nanoseconds())/ops, "off-ns/op")
	b.ReportMetric(float64(wall[1].Nanoseconds())/ops, "on-ns/op")
	b.ReportMetric(100*(float64(wall[1])/float64(wall[0])-1), "cost-%")
	b.ReportMetric(float64(cpu[0].Nanoseconds())/ops, "off-cpu-ns/op")
	b.ReportMetric(float64(cpu[1].Nanoseconds())/ops, "on-cpu-ns/op")
	b.ReportMetric(100*(float64(cpu[1])/float64(cpu[0])-1), "cpu-cost-%")
}

// BenchmarkHooksPerConnection: everything metrics does for one proxied
// connection — the detection result, OpenConn, one chunk each way through
// the splice.Observer, End (errno and lifetime) — without any I/O. "hook" goes through
// DetectHook as detect.Detector calls it (a *detect.Result, the
// Reason's name looked up); "direct" records the same detection with
// ObserveDetection and constant labels.
func BenchmarkHooksPerConnection(b *testing.B) {
	reg := metrics.New(metrics.Config{})
	hook := reg.DetectHook(opaque.Inbound)
	res := detect.Result{Protocol: detect.HTTP1, Reason: detect.ReasonMatched, Bytes: 40, Duration: 20 * time.Microsecond}
	st := splice.Stats{AToB: 1024, BToA: 1024, Duration: 3 * time.Millisecond}
	perConn := func() {
		mc := reg.OpenConn(metrics.ConnLabelsFor(opaque.Inbound, res.Protocol, false))
		obs := mc.Observer()
		obs.Transferred(splice.AToB, 1024)
		obs.Transferred(splice.BToA, 1024)
		mc.End(st)
	}
	b.Run("hook", func(b *testing.B) {
		loopCPU(b, func() {
			hook(&res)
			perConn()
		})
	})
	b.Run("direct", func(b *testing.B) {
		loopCPU(b, func() {
			reg.ObserveDetection(opaque.Inbound, string(res.Protocol), "matched", res.Duration)
			perConn()
		})
	})
}

// BenchmarkCounters: single counter updates (must be 0 allocs/op).
func BenchmarkCounters(b *testing.B) {
	reg := metrics.New(metrics.Config{Ports: opaque.NewPortSet(3306)})
	l := metrics.ConnLabels{Direction: opaque.Inbound, Protocol: "HTTP/2", TLS: metrics.TLSTrue}
	mc := reg.OpenConn(l)
	b.Run("Conn.AddRead", func(b *testing.B) {
		loopCPU(b, func() { mc.AddRead(1500) })
	})
	b.Run("Conn.AddRead/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				mc.AddRead(1500)
			}
		})
	})
	reset := splice.Stats{Err: syscall.ECONNRESET}
	b.Run("OpenConn+End", func(b *testing.B) {
		loopCPU(b, func() { reg.OpenConn(l).End(reset) })
	})
	b.Run("ObserveDetection", func(b *testing.B) {
		loopCPU(b, func() { reg.ObserveDetection(opaque.Inbound, "HTTP/2", "matched", 30*time.Microsecond) })
	})
	b.Run("ObserveDecision", func(b *testing.B) {
		loopCPU(b, func() { reg.ObserveDecision(opaque.Inbound, "opaque", 3306) })
	})
	b.Run("ObserveHandshake", func(b *testing.B) {
		loopCPU(b, func() { reg.ObserveHandshake(opaque.Inbound, metrics.OutcomeSuccess, "", 2*time.Millisecond) })
	})
	b.Run("ObserveTransportHeader", func(b *testing.B) {
		loopCPU(b, func() { reg.ObserveTransportHeader(metrics.HeaderWritten, "HTTP/2") })
	})
	b.Run("Snapshot", func(b *testing.B) {
		loopCPU(b, func() { _ = reg.Snapshot() })
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
			loopCPU(b, func() { wrapped.ServeHTTP(w, req) })
		})
	}
}
