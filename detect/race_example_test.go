package detect_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sniffsplice/sniff/detect"
)

// A proxy port in front of an SMTP server, not declared opaque anywhere: the proxy dials the upstream
// first and lets detection race the two directions. The server's greeting wins, so the connection
// is spliced at once instead of waiting for a detection timeout.
func ExampleDetector_DetectUpstream() {
	// The upstream: a server that speaks first.
	srv, _ := net.Listen("tcp", "127.0.0.1:0")
	defer srv.Close()
	go func() {
		c, err := srv.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "220 mail.example ESMTP\r\n")
		io.Copy(io.Discard, c)
	}()

	// The proxy: accept, dial the upstream, DetectUpstream, then splice (or serve HTTP, ...).
	proxy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer proxy.Close()
	var d detect.Detector
	done := make(chan detect.Result, 1)
	go func() {
		c, err := proxy.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			c.Close()
			return
		}
		res, c2, up2, err := d.DetectUpstream(context.Background(), c, up)
		done <- res
		if err != nil {
			c2.Close()
			up2.Close()
			return
		}
		go func() { io.Copy(up2, c2); up2.Close() }()
		io.Copy(c2, up2)
		c2.Close()
	}()

	client, _ := net.Dial("tcp", proxy.Addr().String())
	defer client.Close()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	greeting := make([]byte, 24)
	io.ReadFull(client, greeting)
	res := <-done
	fmt.Printf("%q\n", greeting)
	fmt.Println(res.Protocol, res.Reason)
	// Output:
	// "220 mail.example ESMTP\r\n"
	// unknown server_first
}

// Remembering ports that keep turning out server-first, so that later connections skip detection.
func ExampleLearner() {
	l := &detect.Learner{
		Threshold: 2,
		TTL:       time.Minute,
		OnChange:  func(ev detect.LearnerEvent) { fmt.Println("port", ev.Port, ev.Change) },
	}
	serverFirst := detect.Result{Protocol: detect.Unknown, Reason: detect.ReasonServerFirst}
	for range 2 {
		fmt.Println("skip detection on 3306:", l.Learned(3306))
		l.Observe(3306, serverFirst) // the result of DetectUpstream on that port
	}
	fmt.Println("skip detection on 3306:", l.Learned(3306))
	// Output:
	// skip detection on 3306: false
	// skip detection on 3306: false
	// port 3306 learned
	// skip detection on 3306: true
}
