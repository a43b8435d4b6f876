// Package metrics counts what a sniff proxy does — connections, bytes, protocol detections, policy
// decisions, mTLS handshakes, transport headers and HTTP requests — with atomic counters in the
// standard library only.
//
// A Registry holds the counters. Labels are resolved once per connection (OpenConn returns a Conn
// handle that updates its series directly), so the per-chunk and per-event updates are a few atomic
// adds and never allocate. Cardinality is bounded by construction: no label takes a peer address,
// ports appear only from a declared set (Config.Ports), peer identities only when
// Config.PeerIdentities is set (and capped), and every other free-form value is capped, the excess
// counted as "other".
//
// The registry implements the hooks of the other packages: DetectHook for detect.Detector.OnResult,
// Conn.Observer for splice.Observer, HandshakeHook for mtls.Config.OnHandshake, MuxHook for
// detect.MuxConfig.OnConn, HeaderObserver for opaque.HeaderCodec.Observer and ObservePolicy for
// opaque.Resolver decisions; the Observe* methods take plain values for other callers. HTTPHandler
// and RoundTripper count HTTP traffic, and ObserveHTTPError the requests a server refused before
// its handler ran. Directions are opaque.Direction (Inbound, Outbound), the project's one direction
// type.
//
// Every metric family is declared once in this package (name, kind, help, labels; see Descs), and
// that declaration drives Snapshot, a generic copy of every series (Snapshot.Value reads one),
// which the metrics/prometheus module turns into Prometheus metrics (it is the only one that
// imports client_golang).
//
// # Wiring a proxy
//
//	reg := metrics.New(metrics.Config{Ports: opaque.NewPortSet(3306, 5432)})
//	d := &detect.Detector{OnResult: reg.DetectHook(opaque.Inbound)} // once, shared
//	// per accepted connection c:
//	dec := resolver.Resolve(opaque.Inbound, port)
//	reg.ObservePolicy(opaque.Inbound, port, dec)
//	res, c, err := d.Detect(ctx, c, detect.WithTimeout(dec.DetectTimeout))
//	mc := reg.OpenConn(metrics.ConnLabelsFor(opaque.Inbound, res.Protocol, meshed))
//	st, _ := joiner.Join(ctx, c, upstream, mc.Observer()) // c is side a
//	mc.End(st)                                            // exactly once
//	// HTTP: reg.HTTPHandler(h, opts), reg.RoundTripper(rt, opts)
//	// Prometheus: prom.MustRegister(sniffprom.NewCollector(reg, sniffprom.Options{}))
//
// # Metrics
//
// Names follow Linkerd's proxy where it has one, in base units (seconds, bytes). Label values:
// direction is "inbound" or "outbound"; tls is "true" (terminated or originated by the proxy),
// "false" (plaintext) or "opaque" (the application's own TLS, passed through); protocol is a detect
// protocol name ("HTTP/1", "HTTP/2", "gRPC", "TLS", "unknown", ...) or "opaque".
//
//	name                                 type       labels                                     meaning
//	tcp_open_total                       counter    direction, protocol, tls                   connections opened
//	tcp_open_connections                 gauge      direction, protocol, tls                   connections open now
//	tcp_read_bytes_total                 counter    direction, protocol, tls                   bytes read from the accepted connection's peer
//	tcp_write_bytes_total                counter    direction, protocol, tls                   bytes written to the accepted connection's peer
//	tcp_close_total                      counter    direction, protocol, tls, errno            connections closed; errno "" for a clean close, else e.g. "ECONNRESET"
//	tcp_connection_duration_seconds      histogram  direction, protocol, tls                   lifetime of connections ended with Conn.End and a duration
//	protocol_detect_total                counter    direction, protocol, reason                detections by result; reason matched, no_match, timeout, closed, limit, server_first
//	protocol_detect_duration_seconds     histogram  direction, protocol, reason                time spent detecting
//	policy_decision_total                counter    direction, action, port                    port policy decisions; action detect, skip, opaque, declared; port a declared port or "other"
//	tls_handshake_total                  counter    direction, outcome, peer_identity          mTLS handshakes; outcome "success" or a failure class; peer_identity only when opted in
//	tls_handshake_duration_seconds       histogram  direction, outcome                         handshake duration (of handshakes reported with one)
//	transport_header_written_total       counter    session_protocol                           opaque transport headers written; session_protocol none, HTTP/1, HTTP/2
//	transport_header_read_total          counter    session_protocol                           opaque transport headers read and accepted
//	transport_header_rejected_total      counter    reason                                     opaque transport headers rejected, by reason
//	mux_connections_total                counter    outcome, protocol                          connections a detect.Mux handled; outcome routed, shed, unrouted, child_closed, detect_failed, shutdown
//	waiter_waiting_connections           gauge      waiter                                     connections waiting in a detect.Waiter now (Registry.AddWaiter names it)
//	waiter_connections_total             counter    waiter, outcome                            waits ended; outcome ready, timed_out, shed, closed
//	waiter_detached_total                counter    waiter                                     waits that went on as a bare descriptor (detect.Waiter.Park)
//	waiter_reduced_total                 counter    waiter                                     waits whose timeout was shortened under pressure
//	request_total                        counter    direction, authority, route                HTTP requests
//	response_total                       counter    direction, authority, route,               HTTP responses; classification success or failure (5xx,
//	                                                classification, status_code, grpc_status   grpc-status != 0, no response or a broken stream)
//	response_latency_seconds             histogram  as response_total                          time from the request to the response headers
//
// Caps (values beyond them are counted as "other"): protocol, errno, detection reason, policy
// action, handshake outcome, transport-header value and mux outcome take at most
// Config.MaxLabelValues values each (errno at most 30); peer_identity Config.MaxPeerIdentities;
// authority and route HTTPOptions.MaxAuthorities and MaxRoutes (or an allow-list of authorities);
// status_code is a number from 100 to 999 or "" when there was no response; grpc_status is "0" to
// "63", "other" or "". AddWaiter keeps at most Config.MaxLabelValues waiter names (later ones are
// not counted).
//
// Histogram bounds are fixed by this package (Histogram.Bounds carries them in a snapshot);
// response_latency_seconds uses Linkerd's response_latency_ms bounds, in seconds.
package metrics
