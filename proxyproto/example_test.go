package proxyproto_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/sniffsplice/sniff/proxyproto"
)

// A server behind a load balancer reads the PROXY header of each accepted
// connection, then serves (or detects, or splices) the very connection.
func ExampleReader_ReadHeader() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()

	// The load balancer's side: a v2 header, then the client's bytes.
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		h := &proxyproto.Header{
			Version: proxyproto.V2, Command: proxyproto.Proxy, Transport: proxyproto.TCP4,
			Source:      netip.MustParseAddrPort("203.0.113.7:51234"),
			Destination: netip.MustParseAddrPort("198.51.100.1:443"),
			TLVs:        []proxyproto.TLV{{Type: proxyproto.TypeAuthority, Value: []byte("api.example")}},
		}
		if _, err := h.WriteTo(c); err != nil {
			return
		}
		c.Write([]byte("hello"))
	}()

	accepted, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	defer accepted.Close()
	// Only the load balancer on loopback may send a header; anyone else
	// sending one is refused.
	r := proxyproto.Reader{
		Rules:   []proxyproto.Rule{{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Policy: proxyproto.Require}},
		Default: proxyproto.Reject,
	}
	conn, hdr, err := r.ReadHeader(context.Background(), accepted)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	_, same := conn.(*net.TCPConn)
	fmt.Println("client:", hdr.Source, "authority:", hdr.Authority())
	fmt.Println("still a *net.TCPConn:", same && conn == accepted)
	rest, _ := io.ReadAll(conn)
	fmt.Printf("then: %q\n", rest)
	// Output:
	// client: 203.0.113.7:51234 authority: api.example
	// still a *net.TCPConn: true
	// then: "hello"
}

// Format writes a header for the next hop; a TypeCRC32C TLV is computed.
func ExampleHeader_Format() {
	h := proxyproto.Header{
		Version: proxyproto.V1, Command: proxyproto.Proxy, Transport: proxyproto.TCP6,
		Source:      netip.MustParseAddrPort("[2001:db8::7]:40000"),
		Destination: netip.MustParseAddrPort("[2001:db8::1]:443"),
	}
	b, _ := h.Format()
	fmt.Printf("%q\n", b)

	h.Version = proxyproto.V2
	h.TLVs = []proxyproto.TLV{{Type: proxyproto.TypeCRC32C}}
	b, _ = h.Format()
	parsed, n, err := proxyproto.Parse(b)
	fmt.Println(n, parsed, err)
	// Output:
	// "PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n"
	// 59 PROXY v2 TCP6 [2001:db8::7]:40000 -> [2001:db8::1]:443 (1 TLVs) <nil>
}
