package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/sniffsplice/sniff/examples/sidecar/proxy"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
)

// Two sidecars on loopback in front of a one-line greeter that speaks first,
// on a port nobody declared: the race lets the greeting through at once.
func ExampleStart() {
	app, _ := net.Listen("tcp", "127.0.0.1:0")
	defer app.Close()
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "220 hello from the app")
			c.Close()
		}
	}()

	ca := mtlstest.MustNew("example.org")
	server, client := ca.Source("/ns/shop/sa/db"), ca.Source("/ns/shop/sa/web")

	// Each sidecar reports the connection when it ends.
	evA, evB := make(chan proxy.Event, 1), make(chan proxy.Event, 1)

	// Sidecar B, in front of the app.
	b, err := proxy.Start(context.Background(), &proxy.Proxy{
		TLS:     &mtls.Config{SVID: server, Bundle: server},
		OnEvent: func(ev proxy.Event) { evB <- ev },
	}, proxy.Listeners{Inbound: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	// Sidecar A, beside the client, with one outbound listener for the app.
	a, err := proxy.Start(context.Background(), &proxy.Proxy{
		TLS: &mtls.Config{SVID: client, Bundle: client},
		Peers: func(netip.AddrPort) (proxy.Peer, error) {
			return proxy.Peer{Addr: b.InboundAddr.String(), ID: ca.ID("/ns/shop/sa/db")}, nil
		},
		OnEvent: func(ev proxy.Event) { evA <- ev },
	}, proxy.Listeners{Forwards: []proxy.Forward{{Listen: "127.0.0.1:0", Dst: app.Addr().(*net.TCPAddr).AddrPort()}}})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	c, _ := net.Dial("tcp", a.ForwardAddrs[0].String())
	greeting, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(greeting)
	c.Close()
	eb, ea := <-evB, <-evA
	fmt.Printf("B: path=%s peer=%s\n", eb.Path, eb.PeerID)
	fmt.Printf("A: path=%s peer=%s\n", ea.Path, ea.PeerID)
	// Output:
	// 220 hello from the app
	// B: path=header peer=spiffe://example.org/ns/shop/sa/web
	// A: path=server-first peer=spiffe://example.org/ns/shop/sa/db
}
