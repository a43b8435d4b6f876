package proxyproto_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/proxyproto"
)

// Behind a load balancer, a one-port server takes the PROXY header off
// first and then detects the protocol that follows it, on the very
// *net.TCPConn (on Linux): detection still peeks (nothing consumed), and the
// connection can still be spliced.
func ExampleReader_ReadHeader_detect() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		h := proxyproto.Header{Version: proxyproto.V1, Command: proxyproto.Proxy, Transport: proxyproto.TCP4,
			Source:      netip.MustParseAddrPort("203.0.113.7:51234"),
			Destination: netip.MustParseAddrPort("198.51.100.1:80")}
		b, _ := h.Format()
		c.Write(append(b, "GET /items HTTP/1.1\r\nHost: shop.example\r\n\r\n"...))
		c.Read(make([]byte, 1)) // wait for the server to finish
	}()

	accepted, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	defer accepted.Close()
	ctx := context.Background()
	var r proxyproto.Reader
	conn, hdr, err := r.ReadHeader(ctx, accepted)
	if err != nil {
		panic(err)
	}
	var d detect.Detector
	res, conn, err := d.Detect(ctx, conn)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Protocol, res.HTTP.Method, res.HTTP.Host(), "from", hdr.Source)
	fmt.Println("still the accepted *net.TCPConn:", conn == accepted)
	// Output:
	// HTTP/1 GET shop.example from 203.0.113.7:51234
	// still the accepted *net.TCPConn: true
}
