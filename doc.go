// Package sniff is the data-plane core of a service-mesh proxy, as composable
// packages: protocol detection, opaque-port policy, zero-copy splicing, mutual
// TLS with SPIFFE identities and metrics.
//
// A proxy accepts a TCP connection. A policy for the destination port decides
// whether to skip it, forward it as opaque bytes, treat it as a declared
// protocol or detect the protocol. Detection peeks at the first bytes without
// consuming them and names HTTP/1, HTTP/2, gRPC, TLS (with SNI and ALPN) or
// unknown. The proxy then serves the protocol or splices the bytes to the
// upstream. Between two proxies, traffic travels inside mutual TLS and an
// opaque connection carries a transport header naming its real target port.
//
// Packages:
//
//	detect    the Detector (peek, classify, hand back the connection with nothing lost) and a one-port Mux
//	opaque    port sets, per-port policy, Linkerd annotations and the opaque transport header
//	splice    bidirectional forwarding: splice(2) where the kernel allows, half-close, timeouts, byte counts;
//	          Loop, an epoll event loop in which an idle connection holds no goroutine, buffer or pipe
//	spiffe    SPIFFE IDs, X.509-SVIDs and trust bundles; the module spiffe/gospiffe adapts go-spiffe (SPIRE)
//	mtls      mutual TLS with SPIFFE identities, certificate rotation and authorization
//	metrics   counters for all of the above; metrics/prometheus exposes them to Prometheus
//	examples  runnable programs: a one-port multiplexer, a two-sidecar mesh, an SNI router
//
// Accept, detect, splice:
//
//	var d detect.Detector // the zero value detects HTTP/1, HTTP/2 and TLS with a 10 s timeout
//	for {
//		c, err := ln.Accept()
//		if err != nil {
//			return err
//		}
//		go func() {
//			res, c, err := d.Detect(ctx, c) // c replays every peeked byte
//			if err != nil {
//				c.Close()
//				return
//			}
//			up, err := net.Dial("tcp", backendFor(res.Protocol))
//			if err != nil {
//				c.Close()
//				return
//			}
//			splice.Join(ctx, c, up) // closes both when done
//		}()
//	}
//
// A proxy that holds many mostly idle connections hands them to a
// splice.Loop instead (loop.Start(ctx, c, up, nil, done) returns at once),
// so that waiting costs no goroutine.
package sniff
