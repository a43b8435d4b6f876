package detect_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/sniffsplice/sniff/detect"
)

// One loopback port serves net/http (HTTP/1 and h2c) and a raw TCP echo; a Mux routes each
// connection by its first bytes. A grpc-go server would take m.Match(detect.GRPC) the same way
// (with Detector.GRPC set to GRPCActive).
func ExampleMux() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	m := detect.NewMux(ln, &detect.Detector{}, detect.MuxConfig{MaxDetections: 1024})
	httpL := m.Match(detect.HTTP1, detect.HTTP2)
	rawL := m.Default() // everything else: unknown protocols and detection timeouts

	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello over %s", r.Proto)
	})}
	httpDone := make(chan struct{})
	go func() { defer close(httpDone); _ = srv.Serve(httpL) }()
	rawDone := make(chan struct{})
	go func() {
		defer close(rawDone)
		for {
			c, err := rawL.Accept()
			if err != nil {
				return // net.ErrClosed once the mux closes
			}
			_, _ = io.Copy(c, c) // echo until the client half-closes
			c.Close()
		}
	}()
	serveDone := make(chan error, 1)
	go func() { serveDone <- m.Serve() }()

	// An HTTP/1.1 client.
	tr := &http.Transport{}
	resp, err := (&http.Client{Transport: tr}).Get("http://" + m.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()
	fmt.Println(string(body))

	// A raw TCP client on the same port.
	c, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	io.Copy(c, strings.NewReader("ping\n"))
	c.(*net.TCPConn).CloseWrite()
	echo, _ := io.ReadAll(c)
	c.Close()
	fmt.Printf("%q\n", echo)

	m.Close() // closes every child: both servers' Accept fail with net.ErrClosed
	fmt.Println(<-serveDone)
	<-rawDone
	srv.Close()
	<-httpDone
	st := m.Stats()
	fmt.Println("routed:", st.Routed, "unrouted:", st.Unrouted)
	// Output:
	// hello over HTTP/1.1
	// "ping\n"
	// detect: mux closed: use of closed network connection
	// routed: 2 unrouted: 0
}
