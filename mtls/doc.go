// Package mtls builds mutual-TLS configurations for connections between proxies, with SPIFFE
// identities.
//
// A [Config] takes the workload's own X.509-SVID from a [spiffe.SVIDSource] and the trust anchors
// from a [spiffe.BundleSource]. Any implementation fits: a [StaticSource] (rotatable by hand), a
// [FileSource] (reloads a Kubernetes secret mount), the in-memory CA of package mtlstest, or a SPIRE
// agent's Workload API through go-spiffe, adapted by the separate module
// github.com/sniffsplice/sniff/spiffe/gospiffe. The SPIFFE types come from sniff's own package
// spiffe, which needs only the standard library, so this package brings neither go-spiffe nor gRPC
// into a user's module graph.
//
// The *tls.Config values built by [Config.ServerTLS] and [Config.ClientTLS]:
//
//   - speak TLS 1.3 only;
//   - fetch the certificate from the source on every handshake (GetCertificate /
//     GetClientCertificate), so a rotated SVID is served on the next connection with no restart,
//     while established connections keep working;
//   - verify the peer in VerifyConnection, which crypto/tls also runs on resumed sessions: the
//     peer's chain is verified against the bundle of the peer's own trust domain, then the
//     [Authorizer] decides; crypto/tls's built-in (hostname-based) verification is turned off
//     because SPIFFE identities live in the URI SAN, not in a DNS name;
//   - turn session tickets off unless [Config.SessionTickets] is set;
//   - negotiate ALPN from [Config.NextProtos] (for example the transport header's
//     "transport.l5d.io/v1").
//
// Verification failures are returned as a [*VerifyError] that matches the sentinel errors
// ([ErrNoPeerCertificate], [ErrExpired], [ErrUnauthorized], ...) with [errors.Is]; [Classify] maps
// any handshake error to a small, bounded set of [Reason] values suitable as a metric label, and
// [Config.OnHandshake] reports the outcome of every handshake that reaches peer verification.
// Nothing in this package logs.
//
// [Handshake] runs a handshake with a context and a default timeout and returns the peer's SPIFFE
// ID; [PeerID] reads it from a connection state.
//
// Meshes that still put identities in DNS SANs, as Linkerd does
// (web.default.serviceaccount.identity.linkerd.cluster.local), are served by [IdentityLinkerdDNS].
//
// A caveat of TLS 1.3 worth knowing: the client finishes its handshake before the server has
// checked the client's certificate, so a client whose certificate is rejected sees the rejection (a
// "remote error" alert) on its first Read, not from Handshake.
package mtls
