package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/examples/sidecar/internal/testserver"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/opaque"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mesh starts a backend (HTTP/1.1 and h2c) and two sidecars in front of it;
// it returns the backend's address and sidecar A's outbound listener for it.
// With netHTTP, the sidecars carry every HTTP/1.1 request through net/http
// and ReverseProxy instead of the direct path.
func mesh(tb testing.TB, netHTTP bool) (direct, viaSidecars string) {
	tb.Helper()
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	body := []byte("hello from the backend\n")
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	})}
	dst := httpBackend(tb, srv)

	ca := mtlstest.MustNew("bench.test")
	srcA, srcB := ca.Source("/sa/client"), ca.Source("/sa/server")
	pB := &Proxy{TLS: &mtls.Config{SVID: srcB, Bundle: srcB}, Metrics: metrics.New(metrics.Config{})}
	pB.http.netHTTPOnly = netHTTP
	sB, err := Start(context.Background(), pB, Listeners{Inbound: "127.0.0.1:0"})
	require.NoError(tb, err)
	tb.Cleanup(func() { sB.Close() })
	pA := &Proxy{
		TLS:      &mtls.Config{SVID: srcA, Bundle: srcA},
		Detector: &detect.Detector{},
		Metrics:  metrics.New(metrics.Config{}),
		Peers: func(netip.AddrPort) (Peer, error) {
			return Peer{Addr: sB.InboundAddr.String(), ID: ca.ID("/sa/server")}, nil
		},
	}
	pA.http.netHTTPOnly = netHTTP
	sA, err := Start(context.Background(), pA, Listeners{Forwards: []Forward{{Listen: "127.0.0.1:0", Dst: dst}}})
	require.NoError(tb, err)
	tb.Cleanup(func() { sA.Close() })
	return dst.String(), sA.ForwardAddrs[0].String()
}

func client(h2 bool) *http.Client {
	var protos http.Protocols
	if h2 {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	return &http.Client{Transport: &http.Transport{Protocols: &protos, MaxIdleConnsPerHost: 64, DisableCompression: true}}
}

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// TestMeshHTTP checks the benchmark's setup answers through the sidecars.
func TestMeshHTTP(t *testing.T) {
	for _, netHTTP := range []bool{false, true} {
		_, via := mesh(t, netHTTP)
		for _, h2 := range []bool{false, true} {
			c := client(h2)
			for range 3 {
				require.NoError(t, get(c, "http://"+via+"/"))
			}
			c.CloseIdleConnections()
		}
	}
}

// BenchmarkHTTP compares keep-alive HTTP/1.1 and h2c requests straight to the
// backend with the same requests through two sidecars (detection, HTTP-level
// proxying on both sides, mutual TLS between them), in one run: "sidecars"
// carries HTTP/1.1 on the direct path (h1.go), "sidecars-nethttp" through
// net/http and ReverseProxy (h2c goes through net/http on both). It reports
// requests/s and the p50/p99 latency of single requests, with one client
// (seq: the latency a request gains) and with 4 concurrent clients on the 2
// CPUs (par: throughput, latency includes queueing). The client, the backend
// and both sidecars share the process: allocs/op are theirs together.
//
//	go test -run '^$' -bench HTTP -benchmem ./examples/sidecar/proxy
func BenchmarkHTTP(b *testing.B) {
	direct, via := mesh(b, false)
	_, viaNetHTTP := mesh(b, true)
	for _, mode := range []string{"seq", "par"} {
		for _, proto := range []string{"http1", "h2c"} {
			for _, path := range []struct{ name, addr string }{{"direct", direct}, {"sidecars", via}, {"sidecars-nethttp", viaNetHTTP}} {
				if proto == "h2c" && path.name == "sidecars-nethttp" {
					continue // the same as sidecars
				}
				b.Run(mode+"/"+proto+"/"+path.name, func(b *testing.B) {
					c := client(proto == "h2c")
					defer c.CloseIdleConnections()
					url := "http://" + path.addr + "/"
					for range 8 { // warm the pools
						if err := get(c, url); err != nil {
							b.Fatal(err)
						}
					}
					var mu sync.Mutex
					var lat []time.Duration
					b.ReportAllocs()
					b.ResetTimer()
					start := time.Now()
					if mode == "seq" {
						for range b.N {
							t0 := time.Now()
							if err := get(c, url); err != nil {
								b.Fatal(err)
							}
							lat = append(lat, time.Since(t0))
						}
					} else {
						b.SetParallelism(2) // 4 clients on 2 CPUs
						b.RunParallel(func(pb *testing.PB) {
							var mine []time.Duration
							for pb.Next() {
								t0 := time.Now()
								if err := get(c, url); err != nil {
									b.Error(err)
									return
								}
								mine = append(mine, time.Since(t0))
							}
							mu.Lock()
							lat = append(lat, mine...)
							mu.Unlock()
						})
					}
					elapsed := time.Since(start)
					b.StopTimer()
					if len(lat) == 0 {
						return
					}
					slices.Sort(lat)
					b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				})
			}
		}
	}
}

// greeter is a server-speaks-first backend: a one-line greeting on accept.
func greeter(tb testing.TB) netip.AddrPort {
	tb.Helper()
	return testserver.Serve(tb, func(c net.Conn) {
		io.WriteString(c, "220 greeter ready\r\n")
		io.Copy(io.Discard, c)
	})
}

// pairFor starts two sidecars in front of dst with the given policy knobs
// and returns sidecar A's outbound listener for it.
func pairFor(tb testing.TB, dst netip.AddrPort, opaquePort bool, noRace bool) string {
	return pairPolicies(tb, dst, opaquePort, opaquePort, noRace)
}

// opaquePolicy declares port opaque (nil: nothing declared, every port
// detected).
func opaquePolicy(tb testing.TB, port uint16, declared bool) *opaque.Resolver {
	tb.Helper()
	if !declared {
		return nil
	}
	ps := opaque.NewPortSet(port)
	t, err := opaque.Compile(opaque.Policy{Workload: opaque.Layer{OpaquePorts: &ps}})
	require.NoError(tb, err)
	return opaque.NewResolver(t)
}

// pairPolicies is pairFor with the port declared opaque on sidecar A
// (opaqueA) and on sidecar B (opaqueB) separately.
func pairPolicies(tb testing.TB, dst netip.AddrPort, opaqueA, opaqueB, noRace bool) string {
	tb.Helper()
	ca := mtlstest.MustNew("bench.test")
	srcA, srcB := ca.Source("/sa/client"), ca.Source("/sa/server")
	policy := opaquePolicy(tb, dst.Port(), opaqueA)
	pB := &Proxy{TLS: &mtls.Config{SVID: srcB, Bundle: srcB}, Policy: opaquePolicy(tb, dst.Port(), opaqueB), NoRace: noRace}
	sB, err := Start(context.Background(), pB, Listeners{Inbound: "127.0.0.1:0"})
	require.NoError(tb, err)
	tb.Cleanup(func() { sB.Close() })
	pA := &Proxy{
		TLS:    &mtls.Config{SVID: srcA, Bundle: srcA},
		Policy: policy,
		NoRace: noRace,
		Peers: func(netip.AddrPort) (Peer, error) {
			return Peer{Addr: sB.InboundAddr.String(), ID: ca.ID("/sa/server")}, nil
		},
	}
	sA, err := Start(context.Background(), pA, Listeners{Forwards: []Forward{{Listen: "127.0.0.1:0", Dst: dst}}})
	require.NoError(tb, err)
	tb.Cleanup(func() { sA.Close() })
	return sA.ForwardAddrs[0].String()
}

// BenchmarkServerFirstTTFB (issue 8): time from connect to the server's
// first byte, for a server-speaks-first backend behind two sidecars, on a
// port nobody declared (the race), the same port declared opaque, and
// Linkerd's behaviour (no race: detection waits for its 10 s timeout), with
// direct as the floor; one run.
//
//	go test -run '^$' -bench ServerFirstTTFB ./examples/sidecar/proxy
func BenchmarkServerFirstTTFB(b *testing.B) {
	dst := greeter(b)
	for _, c := range []struct {
		name               string
		addr               string
		opaquePort, noRace bool
	}{
		{name: "direct", addr: dst.String()},
		{name: "undeclared-race"},
		{name: "declared-opaque", opaquePort: true},
		{name: "linkerd-detect-timeout-10s", noRace: true},
	} {
		addr := c.addr
		if addr == "" {
			addr = pairFor(b, dst, c.opaquePort, c.noRace)
		}
		b.Run(c.name, func(b *testing.B) {
			var lat []time.Duration
			buf := make([]byte, 64)
			for range b.N {
				t0 := time.Now()
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				conn.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := conn.Read(buf); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				conn.Close()
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkInboundDetect measures what issue 16's inbound detection costs.
// Sidecar A declares the port opaque, so it sends a transport header with no
// session protocol at once, as it does for every connection on a port left
// to detection (the server-first race dials before the client speaks). Sidecar
// B either declares the port opaque too (what it did with every such header
// before issue 16: bytes straight to the application) or leaves it to
// detection (now: B detects, raced against the application, so that HTTP is
// served at the HTTP layer and l5d-client-id cannot be forged). One op is a
// new client connection: connect, one exchange (client-first: a line echoed;
// server-first: the greeting), close.
//
//	go test -run '^$' -bench InboundDetect -benchmem ./examples/sidecar/proxy
func BenchmarkInboundDetect(b *testing.B) {
	echo := testserver.Serve(b, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.Copy(c, c)
	})
	greet := greeter(b)
	for _, backend := range []struct {
		name string
		dst  netip.AddrPort
	}{{"client-first", echo}, {"server-first", greet}} {
		for _, inbound := range []struct {
			name     string
			declared bool
		}{{"B-opaque", true}, {"B-detect", false}} {
			addr := pairPolicies(b, backend.dst, true, inbound.declared, false)
			b.Run(backend.name+"/"+inbound.name, func(b *testing.B) {
				var lat []time.Duration
				buf := make([]byte, 64)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					t0 := time.Now()
					conn, err := net.Dial("tcp", addr)
					if err != nil {
						b.Fatal(err)
					}
					conn.SetDeadline(time.Now().Add(30 * time.Second))
					if backend.dst == echo {
						io.WriteString(conn, "ping\n")
					}
					if _, err := conn.Read(buf); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
					conn.Close()
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}
