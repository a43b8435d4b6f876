package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/splice"
)

// A connection's labels are resolved once, when it is opened; the handle
// then counts bytes and the close without looking anything up.
func ExampleRegistry_OpenConn() {
	reg := metrics.New(metrics.Config{})
	mc := reg.OpenConn(metrics.ConnLabels{Direction: metrics.Inbound, Protocol: "HTTP/1", TLS: metrics.TLSTrue})
	mc.Read(512)
	mc.Write(2048)
	mc.Close("ECONNRESET")

	for _, s := range reg.Snapshot().TCP {
		fmt.Printf("%s %s tls=%s opened=%d open=%d read=%d written=%d closed=%v\n",
			s.Direction, s.Protocol, s.TLS, s.Opened, s.Open, s.ReadBytes, s.WriteBytes, s.Closed)
	}
	// Output:
	// inbound HTTP/1 tls=true opened=1 open=0 read=512 written=2048 closed=[{ECONNRESET 1}]
}

// Wiring a proxy: the detector reports results through DetectHook, the
// connection handle is the splice observer, and the join's error gives
// the errno of tcp_close_total.
func ExampleRegistry_DetectHook() {
	reg := metrics.New(metrics.Config{})
	d := detect.Detector{OnResult: reg.DetectHook(metrics.Inbound)}

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
	mc := reg.OpenConn(metrics.ConnLabelsFor(metrics.Inbound, res.Protocol))
	u, _ := net.Dial("tcp", up.Addr().String())
	var j splice.Joiner
	_, err = j.Join(ctx, c, u, mc.Observer())
	mc.CloseErr(err)

	snap := reg.Snapshot()
	fmt.Println("detected:", snap.DetectionCount(metrics.Inbound, "HTTP/1", "matched"))
	s := snap.TCPFor(metrics.ConnLabels{Direction: metrics.Inbound, Protocol: "HTTP/1"})
	fmt.Println("read:", s.ReadBytes, "written:", s.WriteBytes, "open:", s.Open)
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
		Direction:   metrics.Inbound,
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
		if n := reg.Snapshot().ResponseCount(metrics.Inbound, 404, ""); n == 1 {
			break
		}
	}
	for _, r := range reg.Snapshot().Responses {
		fmt.Println(r.Authority, r.StatusCode, r.Classification, r.Count)
	}
	// Output:
	// web.example 200 success 2
	// web.example 404 success 1
}
