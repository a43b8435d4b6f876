package mtls

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/sniffsplice/sniff/spiffe"
)

// DefaultHandshakeTimeout bounds [Handshake] when its context has no deadline.
const DefaultHandshakeTimeout = 10 * time.Second

// Handshake runs the TLS handshake of c (a connection built with a configuration from
// [Config.ServerTLS] or [Config.ClientTLS]) and returns the peer's identity. It gives up when ctx
// is done, or after DefaultHandshakeTimeout when ctx has no deadline; crypto/tls then closes the
// connection and the error is ctx's (context.DeadlineExceeded for the default timeout). Errors from
// this side's verification are *VerifyError; [Classify] maps any error to a [Reason].
//
// On the client side of TLS 1.3, a server that refuses the client's certificate does so after the
// client's handshake has completed: Handshake succeeds and the refusal arrives as an error from the
// first Read.
//
// Calling Handshake on a connection that has already completed its handshake just returns the
// peer's identity.
//
// The handshake runs on a goroutine of its own, which Handshake waits for: the stack that
// certificate parsing, verification and the key exchange grow (tens of KiB) is freed when it ends,
// instead of staying with the caller's goroutine, which typically serves the connection for its
// whole life and would keep it (Go shrinks a stack only at a collection, and only to half while a
// quarter is used). Through two sidecars that keeps 6 KiB less per idle opaque connection; it costs
// 1-3% of a handshake's time (BenchmarkHandshakeOwnGoroutine).
func Handshake(ctx context.Context, c *tls.Conn) (spiffe.ID, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultHandshakeTimeout)
		defer cancel()
	}
	if !c.ConnectionState().HandshakeComplete {
		done := make(chan error, 1)
		go func() { done <- c.HandshakeContext(ctx) }()
		if err := <-done; err != nil {
			return spiffe.ID{}, err
		}
	}
	return PeerID(c.ConnectionState())
}

// PeerID returns the identity of the peer of a completed handshake: the SPIFFE ID of the leaf's URI
// SAN or, when the leaf has none, the [ParseLinkerdDNS] form of its Linkerd DNS SAN. It reads the
// certificate; trust in it comes from the verification that configurations of this package perform
// during the handshake, so use it only on connections built from them. It returns ErrNoPeerID
// before the handshake or when the peer sent no certificate.
func PeerID(cs tls.ConnectionState) (spiffe.ID, error) {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return spiffe.ID{}, ErrNoPeerID
	}
	leaf := cs.PeerCertificates[0]
	if len(leaf.URIs) == 0 {
		if id, err := linkerdIDFromCert(leaf); err == nil {
			return id, nil
		}
	}
	id, err := spiffe.IDFromCert(leaf)
	if err != nil {
		return spiffe.ID{}, &VerifyError{Reason: ReasonBadCertificate, Err: err}
	}
	return id, nil
}
