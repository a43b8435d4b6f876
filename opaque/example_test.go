package opaque_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/sniffsplice/sniff/opaque"
)

// Parse a Linkerd port list, extend the default opaque ports with it, and
// print the canonical form.
func ExampleParsePortSet() {
	extra, err := opaque.ParsePortSet("4568, 4567, 8000-8002,8001")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(extra)
	fmt.Println(extra.Contains(8001), extra.Contains(8003))

	all := opaque.DefaultOpaquePorts().Union(extra)
	fmt.Println(all)
	// Output:
	// 4567-4568,8000-8002
	// true false
	// 25,587,3306,4444,4567-4568,5432,6379,8000-8002,9300,11211
}

// A bad item is named, with its position and its kind.
func ExampleParsePortSet_error() {
	_, err := opaque.ParsePortSet("80, 443, 70000")
	fmt.Println(err)
	var pe *opaque.PortListError
	if errors.As(err, &pe) {
		fmt.Println(pe.Item, pe.Index, errors.Is(err, opaque.ErrPortTooLarge))
	}
	// Output:
	// opaque: port list item 3 "70000" (byte 9): port is greater than 65535
	// 70000 3 true
}

// Build a policy from the annotations of a namespace, of the local workload
// (with a named container port) and of an outbound destination service, and
// resolve ports. Opaque ports belong to the destination side; a set value
// replaces the one below it.
func ExampleLayerFromAnnotations() {
	containerPorts := map[string]uint16{"mysql": 3307, "admin": 9990}
	lookup := func(name string) (uint16, bool) { p, ok := containerPorts[name]; return p, ok }

	ns, err := opaque.LayerFromAnnotations(map[string]string{
		"config.linkerd.io/opaque-ports":        "5000",
		"config.linkerd.io/skip-outbound-ports": "443",
	}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	pod, err := opaque.LayerFromAnnotations(map[string]string{
		"config.linkerd.io/opaque-ports":       "mysql, 4567-4568", // replaces the namespace's list
		"config.linkerd.io/skip-inbound-ports": "admin",
	}, lookup)
	if err != nil {
		fmt.Println(err)
		return
	}
	svc, err := opaque.LayerFromAnnotations(map[string]string{
		"config.linkerd.io/opaque-ports": "6380",
	}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	table, err := opaque.Compile(opaque.Policy{Namespace: ns, Workload: pod, Destination: &svc})
	if err != nil {
		fmt.Println(err)
		return
	}
	var r opaque.Resolver
	r.Store(table)
	for _, q := range []struct {
		dir  opaque.Direction
		port uint16
	}{
		{opaque.Inbound, 3307}, {opaque.Inbound, 5000}, {opaque.Inbound, 9990},
		{opaque.Outbound, 443}, {opaque.Outbound, 6380}, {opaque.Outbound, 3307}, {opaque.Inbound, 8080},
	} {
		fmt.Printf("%s %d: %s\n", q.dir, q.port, r.Resolve(q.dir, q.port))
	}

	_, err = opaque.LayerFromAnnotations(map[string]string{"config.linkerd.io/skip-inbound-ports": "22,0"}, nil)
	fmt.Println(err)
	// Output:
	// inbound 3307: opaque
	// inbound 5000: detect 10s
	// inbound 9990: skip
	// outbound 443: skip
	// outbound 6380: opaque
	// outbound 3307: detect 10s
	// inbound 8080: detect 10s
	// opaque: annotation config.linkerd.io/skip-inbound-ports="22,0": port list item 2 "0" (byte 3): port 0 is not a valid port
}

// A Linkerd Server's proxyProtocol declares the protocol of one port, above
// every annotation layer.
func ExampleParseProxyProtocol() {
	d, err := opaque.ParseProxyProtocol("gRPC")
	if err != nil {
		fmt.Println(err)
		return
	}
	table, err := opaque.Compile(opaque.Policy{
		Ports: []opaque.PortPolicy{{Port: 50051, Decision: d}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	r := opaque.NewResolver(table)
	fmt.Println(r.Resolve(opaque.Inbound, 50051))
	fmt.Println(r.Resolve(opaque.Inbound, 3306))
	// Output:
	// declared gRPC
	// opaque
}

// Write a transport header in front of the application's bytes, then read it
// back: ReadHeader stops exactly at the end of the header.
func ExampleWriteHeader() {
	var conn bytes.Buffer // stands in for the mTLS connection to port 4143
	h := opaque.Header{Port: 3306}
	if err := opaque.WriteHeader(&conn, h); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d bytes: %q\n", conn.Len(), conn.String())
	conn.WriteString("application bytes")

	got, err := opaque.ReadHeader(&conn)
	if err != nil {
		fmt.Println(err)
		return
	}
	rest, _ := io.ReadAll(&conn)
	fmt.Printf("port %d, then %q\n", got.Port, rest)
	// Output:
	// 30 bytes: "transport.l5d.io/v1\r\n\r\n\x00\x00\x00\x03\b\xea\x19"
	// port 3306, then "application bytes"
}

// Read a header with a name and a session protocol; reject what is not a
// header.
func ExampleReadHeader() {
	b, err := opaque.Header{Port: 8080, Name: "web.default.svc.cluster.local", SessionProtocol: opaque.SessionHTTP2}.MarshalBinary()
	if err != nil {
		fmt.Println(err)
		return
	}
	h, err := opaque.ReadHeader(bytes.NewReader(b))
	fmt.Println(h.Port, h.Name, h.SessionProtocol, err)

	_, err = opaque.ReadHeader(bytes.NewReader([]byte("GET / HTTP/1.1\r\n\r\n")))
	fmt.Println(errors.Is(err, opaque.ErrNoPreface))
	// Output:
	// 8080 web.default.svc.cluster.local HTTP/2 <nil>
	// true
}

// A Service port's appProtocol declares what clients' proxies do on that
// port; values Linkerd does not know fall back to detection.
func ExampleParseAppProtocol() {
	var ports []opaque.PortPolicy
	for port, appProtocol := range map[uint16]string{8080: "http", 8081: "kubernetes.io/h2c", 5432: "linkerd.io/tcp"} {
		if d, ok := opaque.ParseAppProtocol(appProtocol); ok {
			ports = append(ports, opaque.PortPolicy{Direction: opaque.Outbound, Port: port, Decision: d})
		}
	}
	table, err := opaque.Compile(opaque.Policy{Ports: ports})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, port := range []uint16{8080, 8081, 5432, 9000} {
		fmt.Println(port, table.Resolve(opaque.Outbound, port))
	}
	_, ok := opaque.ParseAppProtocol("kubernetes.io/ws")
	fmt.Println(ok)
	// Output:
	// 8080 declared HTTP/1
	// 8081 declared HTTP/2
	// 5432 opaque
	// 9000 detect 10s
	// false
}
