package detect_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sniffsplice/sniff/detect"
)

// Detect names the protocol and hands back a connection that still
// delivers every byte: here net/http reads the request the detector peeked
// at.
func ExampleDetector_Detect() {
	client, server := net.Pipe()
	go func() {
		defer client.Close()
		fmt.Fprint(client, "GET /hello HTTP/1.1\r\nHost: example.com\r\n\r\n")
	}()

	d := &detect.Detector{Timeout: 5 * time.Second}
	res, conn, err := d.Detect(context.Background(), server)
	if err != nil {
		fmt.Println("detect:", err)
		return
	}
	defer conn.Close()
	fmt.Println(res.Protocol, res.Reason, res.HTTP.Method, res.HTTP.Host())

	req, err := http.ReadRequest(bufio.NewReader(conn))
	if err != nil {
		fmt.Println("read:", err)
		return
	}
	fmt.Println(req.Method, req.URL.Path, req.Host)
	// Output:
	// HTTP/1 matched GET example.com
	// GET /hello example.com
}

// A first byte that no matcher accepts decides Unknown at once, without
// waiting for the timeout; the proxy then forwards the bytes opaque.
func ExampleDetector_Detect_unknown() {
	client, server := net.Pipe()
	go func() {
		defer client.Close()
		client.Write([]byte("\x7fopaque bytes"))
	}()
	res, conn, err := (&detect.Detector{}).Detect(context.Background(), server)
	if err != nil {
		fmt.Println("detect:", err)
		return
	}
	defer conn.Close()
	fmt.Println(res.Protocol, res.Reason, res.Bytes > 0)
	// Output:
	// unknown no_match true
}

// A user's own matcher names its own protocol; matchers are tried in order
// and the built-in ones can be mixed in.
func ExampleNewMatcher() {
	redis := detect.NewMatcher("redis", func(b []byte, _ *detect.Result) detect.Verdict {
		const ping = "PING\r\n"
		n := min(len(b), len(ping))
		switch {
		case !bytes.Equal(b[:n], []byte(ping[:n])):
			return detect.NoMatch
		case n < len(ping):
			return detect.NeedMore
		}
		return detect.Match
	})
	d := &detect.Detector{Matchers: []detect.Matcher{detect.HTTP1Matcher(), redis, detect.SSHMatcher()}}

	client, server := net.Pipe()
	go func() {
		defer client.Close()
		client.Write([]byte("PING\r\n"))
	}()
	res, conn, err := d.Detect(context.Background(), server)
	if err != nil {
		fmt.Println("detect:", err)
		return
	}
	defer conn.Close()
	fmt.Println(res.Protocol)
	// Output:
	// redis
}

// Where TLS is terminated behind the detector (a Mux's TLS listener served
// by crypto/tls) and nothing routes on SNI, TLSRecordMatcher classifies
// the hello by its record and handshake headers without parsing it, so
// Result.TLS stays empty.
func ExampleTLSRecordMatcher() {
	client, server := net.Pipe()
	go func() {
		defer client.Close()
		// Sends a real ClientHello, then fails once the example closes.
		_ = tls.Client(client, &tls.Config{ServerName: "api.example.com"}).Handshake()
	}()
	d := &detect.Detector{Matchers: []detect.Matcher{
		detect.HTTP2Matcher(), detect.HTTP1Matcher(), detect.TLSRecordMatcher(),
	}}
	res, conn, err := d.Detect(context.Background(), server)
	if err != nil {
		fmt.Println("detect:", err)
		return
	}
	defer conn.Close()
	fmt.Printf("%v %v SNI=%q\n", res.Protocol, res.Reason, res.TLS.ServerName())
	// Output:
	// TLS matched SNI=""
}
