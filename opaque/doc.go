// Package opaque decides, before any byte is read, how a connection to a port is handled, and
// carries opaque connections between two proxies.
//
// It has three parts:
//
//   - Port sets. A PortSet is an immutable 65,536-bit set with O(1), allocation-free Contains.
//     ParsePortSet reads Linkerd's syntax ("25,587,3306,4567-4568"); String gives back the
//     canonical compact form. DefaultOpaquePorts is Linkerd's default opaque list.
//
//   - Policy. A Decision says what to do with a port: skip the proxy, proxy it as opaque bytes,
//     serve a declared protocol, or detect with a timeout. A Policy stacks layers (built-in default
//     < cluster < namespace < workload, or a destination service for outbound opaque ports <
//     explicit per-port Server policy); a set value replaces the one below rather than merging. A
//     layer can be built from Linkerd's config.linkerd.io annotations with LayerFromAnnotations.
//     Compile turns a Policy into an immutable Table; a Resolver answers Resolve(direction, port)
//     from the current Table without locks or allocation and swaps in a new Table atomically with
//     Store.
//
//   - The transport header. An opaque connection from one proxy to another goes to the peer's
//     inbound port (DefaultInboundPort, 4143) inside mutual TLS with ALPN "transport.l5d.io/v1",
//     and starts with a Header naming the real target port, in Linkerd's wire format. WriteHeader
//     and ReadHeader encode and decode it; ReadHeader consumes exactly the header, so the bytes
//     after it stay in the connection.
//
// Direction (Inbound, Outbound) is the proxy side of a connection for the whole project: the
// metrics package labels connections with it too.
//
// Nothing in this package logs or keeps global mutable state. Errors are typed values for errors.Is
// and errors.As, and print on one line with one "opaque: " prefix.
package opaque
