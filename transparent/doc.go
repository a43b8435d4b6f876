// Package transparent gives what a transparent proxy needs to know about a
// connection that iptables (or nftables) redirected to it: where the
// client was really going.
//
// In transparent mode (Linkerd's proxy-init, Istio's sidecar), a NAT rule
// such as
//
//	iptables -t nat -A OUTPUT -p tcp -j REDIRECT --to-ports 4140
//
// sends every outbound connection to the proxy's listener. [OriginalDst]
// reads the address the client dialled, from the kernel's connection
// tracking (getsockopt SO_ORIGINAL_DST for IPv4, IP6T_SO_ORIGINAL_DST for
// IPv6), so the proxy can connect there. It needs the *net.TCPConn the
// listener accepted, or a connection that unwraps to one through NetConn
// methods (package detect's and package proxyproto's connections, a
// *tls.Conn); reading the original destination before or after detection
// makes no difference, since neither consumes the socket.
//
// It works on Linux only; elsewhere OriginalDst returns an error.
package transparent
