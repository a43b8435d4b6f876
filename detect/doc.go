// Package detect peeks at the first bytes of a connection, names the protocol and hands the
// connection back with nothing lost.
//
// A [Detector] runs a list of [Matcher]s over the bytes the client sends first. Each matcher
// answers [Match], [NoMatch] or [NeedMore]; detection ends the moment the answer is known, so a
// first byte that cannot start any known protocol decides [Unknown] at once and only silence waits,
// up to the Detector's timeout (10 s by default, after which the connection is opaque, not closed).
//
// Built-in matchers, exported so callers choose and order them:
//
//	HTTP2Matcher       the full 24-byte HTTP/2 prior-knowledge preface
//	HTTP1Matcher       a complete HTTP/1.x request line with a known method (Host when peeked)
//	TLSMatcher         a TLS ClientHello (SNI, ALPN, versions), parsed without allocating
//	TLSRecordMatcher   TLS by its first 11 bytes (record, handshake type, version), no SNI/ALPN (opt-in)
//	PROXYMatcher       PROXY protocol v1 and v2 headers (opt-in)
//	SSHMatcher         an SSH-2.0 identification string (opt-in)
//	PostgreSQLMatcher  a PostgreSQL SSLRequest, GSSENCRequest, CancelRequest or StartupMessage (opt-in)
//
// DefaultMatchers is HTTP/2, HTTP/1, TLS. Where TLS is terminated behind the detector and nothing
// routes on SNI or ALPN, [TLSRecordMatcher] can take TLSMatcher's place: it decides on the first
// bytes of the hello instead of the whole of it. [NewMatcher] wraps a function as a matcher of the
// caller's own protocol. Detector.GRPC adds a refinement that tells gRPC from other HTTP/2 by the
// content-type of the first HEADERS frame, passively or actively (see [GRPCMode]).
//
// A [Result] says which protocol, why detection ended ([Reason]: matched, no_match, timeout,
// closed, limit), how many bytes were examined and how long it took; for HTTP/1 the method and
// Host, for TLS the SNI, ALPN list and offered versions ([TLSInfo]). Detector.OnResult receives
// every Result, for metrics.
//
// On the MSG_PEEK path Detect allocates nothing. A connection that stays silent holds no peek
// buffer while it waits; the buffer (16 KiB, pooled) is taken when bytes arrive and returned when
// detection ends.
//
// Nothing is lost and, where possible, nothing is wrapped: on Linux a *net.TCPConn is peeked with
// recv(MSG_PEEK) and returned as is, so io.Copy to another TCP connection still uses splice(2).
// Other connections (TLS, pipes, other systems) are read into a pooled buffer and returned as a
// [*ReplayConn] that replays the bytes and then hands off to the inner connection.
//
// In active gRPC mode the detector writes one SETTINGS frame to the client, and the client's ACK of
// it must never reach the real HTTP/2 server: it is removed from the consumed bytes or, when it
// comes later (behind a window of request DATA), dropped by the returned ReplayConn as it passes.
// Until then the ReplayConn walks the HTTP/2 frame headers of what it reads (holding one 9-byte
// header and a length, nothing more), its WriteTo copies through a pooled buffer, and its Buffered
// stays above 0 so that a splicing caller keeps reading through Read; once the ACK has passed,
// reads, WriteTo and splice(2) go straight to the inner connection again.
//
// A Detector is built once and shared: its OnResult hook lasts across calls, and what differs per
// connection (a port's detection timeout) is an [Option] of the call, such as [WithTimeout]. A
// [Mux] refuses a GRPC route its Detector cannot detect: the child listener's Accept fails.
//
// To serve many protocols on one port, [NewMux] runs a Detector on every accepted connection and
// hands it to the child listener of its protocol (one port, many servers). Until a connection sends
// its first bytes it waits in a [Waiter] — on Linux an epoll set with one goroutine for all of them
// — so a flood of clients that connect and say nothing costs their sockets and a few hundred bytes
// each, and delays no one; a full Waiter sheds its oldest connection instead of refusing new ones.
// For protocols in which the server speaks first (SMTP, MySQL, ...), which no client bytes can
// reveal, [Detector.DetectUpstream] races the client against the upstream without configuration;
// its rule and limits are in SERVERFIRST.md in this directory.
package detect
