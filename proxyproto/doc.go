// Package proxyproto reads and writes the PROXY protocol (HAProxy's
// version 1 text line and version 2 binary header with its TLVs): what a
// load balancer sends first on each connection to tell the server behind
// it who the client is.
//
// # Reading, without wrapping
//
// [Reader.ReadHeader] takes an accepted connection and returns the
// connection to go on with and the [Header]:
//
//	var r proxyproto.Reader // zero value: every source must send a header, 5 s to send it
//	conn, hdr, err := r.ReadHeader(ctx, accepted)
//
// On Linux, for a *net.TCPConn, the header is peeked with recv(MSG_PEEK)
// and then exactly its bytes are read off the socket, so conn is the very
// *net.TCPConn that was accepted: protocol detection (package detect peeks
// the bytes after the header), splice(2) (package splice, or io.Copy to
// another TCP connection), CloseWrite and SO_ORIGINAL_DST all keep working.
// Libraries that hand back a wrapper around a buffered reader lose all of
// that. Any other connection (TLS, pipes) is read and, when bytes beyond
// the header were read, returned as a connection that replays them and
// then hands off to the inner one (io.Copy and package splice still reach
// the inner connection's fast path).
//
// # Trust
//
// A header lets its sender claim any client address, so only trusted load
// balancers may send one. Reader.Rules give a [Policy] per source prefix:
// [Require] (the zero value: a header must come, as HAProxy's accept-proxy
// wants), [Allow] (used when present), [Ignore] (removed but not used),
// [Reject] (a header is an error) or [Skip] (nothing is read). A header
// must arrive within Reader.Timeout (5 s by default).
//
// # What a header says
//
// Version 2 headers carry TCP or UDP over IPv4 or IPv6, Unix paths, or
// nothing (UNSPEC, and the LOCAL command of health checks: use the
// connection's own addresses, see [Header.Proxied]), and TLVs: ALPN,
// authority (the TLS SNI), CRC32C (verified when present), unique ID,
// NETNS, and SSL with its sub-TLVs (TLS version, client certificate CN,
// cipher, signature and key algorithms). Unknown TLVs (such as the cloud
// load balancers' 0xE0-0xEF ones) are kept as they came.
//
// # Writing
//
// [Header.Format] and [Header.WriteTo] write either version for the next
// hop, version 2 with TLVs (a CRC32C TLV is computed); [HeaderFor] fills a
// header from the client's connection.
//
// # Servers that take a net.Listener
//
// [Listener] wraps a listener for net/http and the like: Accept returns at
// once and each connection reads its header on first use, in its own
// goroutine, so a slow client never blocks the accept loop; RemoteAddr is
// the client's address from the header.
//
// Errors are [*Error] values with a Kind (ErrNoHeader, ErrInvalid,
// ErrChecksum, ErrTruncated, ErrTimeout, ...) for errors.Is. Parse works
// on bytes alone. Nothing here logs or keeps global state.
package proxyproto
