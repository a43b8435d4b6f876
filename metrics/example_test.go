package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
)

// A connection's labels are resolved once, when it is opened; the handle
// then counts bytes and the end without looking anything up. A snapshot
// holds every family, each series with its label values.
func ExampleRegistry_OpenConn() {
	reg := metrics.New(metrics.Config{})
	mc := reg.OpenConn(metrics.ConnLabels{Direction: opaque.Inbound, Protocol: "HTTP/1", TLS: metrics.TLSTrue})
	mc.AddRead(512)
	mc.AddWritten(2048)
	mc.End(splice.Stats{Err: syscall.ECONNRESET, Duration: 30 * time.Millisecond})

	for _, f := range reg.Snapshot().Families {
		for _, s := range f.Series {
			fmt.Println(f.Name, f.Labels, s.Labels, s.Value)
		}
	}
	// Output:
	// tcp_open_total [direction protocol tls] [inbound HTTP/1 true] 1
	// tcp_open_connections [direction protocol tls] [inbound HTTP/1 true] 0
	// tcp_read_bytes_total [direction protocol tls] [inbound HTTP/1 true] 512
	// tcp_write_bytes_total [direction protocol tls] [inbound HTTP/1 true] 2048
	// tcp_close_total [direction protocol tls errno] [inbound HTTP/1 true ECONNRESET] 1
	// tcp_connection_duration_seconds [direction protocol tls] [inbound HTTP/1 true] 1
}

// Wiring a proxy: the detector, built once, reports results through
// DetectHook; the connection handle gives the splice observer, and the
// join's statistics give the errno of tcp_close_total and the lifetime.
func ExampleRegistry_DetectHook() {
	reg := metrics.New(metrics.Config{})
	d := &detect.Detector{OnResult: reg.DetectHook(opaque.Inbound)}

	// A client and an upstream, on loopback.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	up, _ := net.Listen("tcp", "127.0.0.1:0")
	defer up.Close()
	go func() { // the upstream answers and closes
		c, err := up.Accept()
		if err != nil {
			return
		}
		io.CopyN(io.Discard, c, 18)
		io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		c.Close()
	}()
	go func() { // the client
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		io.WriteString(c, "GET / HTTP/1.1\r\n\r\n")
		io.Copy(io.Discard, c)
		c.Close()
	}()

	// The proxy, for one connection.
	ctx := context.Background()
	c, _ := ln.Accept()
	res, c, err := d.Detect(ctx, c)
	if err != nil {
		fmt.Println(err)
		return
	}
	mc := reg.OpenConn(metrics.ConnLabelsFor(opaque.Inbound, res.Protocol, false))
	u, _ := net.Dial("tcp", up.Addr().String())
	var j splice.Joiner
	st, _ := j.Join(ctx, c, u, mc.Observer())
	mc.End(st)

	snap := reg.Snapshot()
	fmt.Println("detected:", snap.Value("protocol_detect_total", "protocol", "HTTP/1", "reason", "matched"))
	conn := []string{"direction", "inbound", "protocol", "HTTP/1"}
	fmt.Println("read:", snap.Value("tcp_read_bytes_total", conn...), "written:", snap.Value("tcp_write_bytes_total", conn...),
		"open:", snap.Value("tcp_open_connections", conn...))
	// Output:
	// detected: 1
	// read: 18 written: 27 open: 0
}

// HTTPHandler counts requests and responses of a handler; RoundTripper
// does the same for a client.
func ExampleRegistry_HTTPHandler() {
	reg := metrics.New(metrics.Config{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
		}
	})
	srv := httptest.NewServer(reg.HTTPHandler(h, metrics.HTTPOptions{
		Direction:   opaque.Inbound,
		Authorities: []string{"web.example"}, // every other authority is "other"
	}))
	defer srv.Close()

	for _, path := range []string{"/", "/", "/missing"} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Host = "web.example"
		resp, err := srv.Client().Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
	}
	// The middleware records a response when the handler returns, which
	// may be just after the client has it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if reg.Snapshot().Value("response_total", "status_code", "404") == 1 {
			break
		}
	}
	f, _ := reg.Snapshot().Family("response_total")
	fmt.Println(f.Labels)
	for _, s := range f.Series {
		fmt.Println(s.Labels, s.Value)
	}
	// Output:
	// [direction authority route classification status_code grpc_status]
	// [inbound web.example  success 200 ] 2
	// [inbound web.example  success 404 ] 1
}

// Value reads one number out of a snapshot: the sum of the series of a family whose labels match
// the pairs given; labels not named match any value.
func ExampleSnapshot_Value() {
	reg := metrics.New(metrics.Config{})
	reg.ObserveDetection(opaque.Inbound, "HTTP/1", "matched", time.Millisecond)
	reg.ObserveDetection(opaque.Inbound, "TLS", "matched", time.Millisecond)
	reg.ObserveDetection(opaque.Outbound, "HTTP/1", "matched", time.Millisecond)

	s := reg.Snapshot()
	fmt.Println(s.Value("protocol_detect_total"))
	fmt.Println(s.Value("protocol_detect_total", "direction", "inbound"))
	fmt.Println(s.Value("protocol_detect_total", "direction", "inbound", "protocol", "TLS"))
	// Output:
	// 3
	// 2
	// 1
}

// A detect.Waiter (or a detect.Mux, through Mux.WaitStats) is added by name; its counts are
// read at each snapshot or scrape, as the waiter_* families.
func ExampleRegistry_AddWaiter() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer server.Close()

	var w detect.Waiter // where a server's connections wait for their first bytes
	defer w.Close()
	reg := metrics.New(metrics.Config{})
	reg.AddWaiter("first_bytes", w.Stats) // a Mux: reg.AddWaiter("mux", mux.WaitStats)

	ready := make(chan error, 1)
	w.Wait(server, 5*time.Second, func(c net.Conn, err error) { ready <- err })
	fmt.Println("waiting:", reg.Snapshot().Value("waiter_waiting_connections", "waiter", "first_bytes"))
	client.Write([]byte("hello"))
	fmt.Println("ready error:", <-ready)
	s := reg.Snapshot()
	fmt.Println("waiting:", s.Value("waiter_waiting_connections", "waiter", "first_bytes"))
	fmt.Println("ready:", s.Value("waiter_connections_total", "waiter", "first_bytes", "outcome", "ready"))
	// Output:
	// waiting: 1
	// ready error: <nil>
	// waiting: 0
	// ready: 1
}
