package mtls

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/sniffsplice/sniff/spiffe"
)

// Sentinel errors. A [*VerifyError] matches the one of its [Reason] with [errors.Is].
var (
	// ErrNoPeerCertificate: the peer presented no certificate.
	ErrNoPeerCertificate = errors.New("mtls: peer presented no certificate")
	// ErrBadCertificate: the peer's leaf is not a valid SVID for the identity mode (no or several
	// URI SANs, malformed SPIFFE ID, a CA certificate, no Linkerd DNS identity, ...).
	ErrBadCertificate = errors.New("mtls: peer certificate is not a valid identity document")
	// ErrUnknownTrustDomain: there is no bundle for the peer's trust domain.
	ErrUnknownTrustDomain = errors.New("mtls: no trust bundle for the peer's trust domain")
	// ErrUntrusted: the peer's chain does not verify against the bundle.
	ErrUntrusted = errors.New("mtls: peer certificate chain is not trusted")
	// ErrExpired: a certificate of the peer's chain has expired.
	ErrExpired = errors.New("mtls: peer certificate has expired")
	// ErrNotYetValid: a certificate of the peer's chain is not valid yet.
	ErrNotYetValid = errors.New("mtls: peer certificate is not yet valid")
	// ErrUnauthorized: the chain is valid but the Authorizer refused the peer's identity.
	ErrUnauthorized = errors.New("mtls: peer identity is not authorized")

	// ErrNoSVIDSource: Config.SVID is nil.
	ErrNoSVIDSource = errors.New("mtls: Config.SVID is nil")
	// ErrNoBundleSource: Config.Bundle is nil.
	ErrNoBundleSource = errors.New("mtls: Config.Bundle is nil")
	// ErrNoSVID: the SVID source returned no usable SVID.
	ErrNoSVID = errors.New("mtls: no usable SVID")
	// ErrNoPeerID: a connection state carries no peer identity (no handshake yet, or no peer
	// certificate).
	ErrNoPeerID = errors.New("mtls: connection has no peer identity")
	// ErrNotLinkerdIdentity: a name is not a Linkerd DNS identity
	// (<sa>.<ns>.serviceaccount.identity.linkerd.<trust-domain>), or a SPIFFE ID has no such form
	// (spiffe://<td>/ns/<ns>/sa/<sa>).
	ErrNotLinkerdIdentity = errors.New("mtls: not a Linkerd identity")
	// ErrKeyMismatch: a FileSource's private key does not belong to its certificate (typically a
	// certificate written before its key). It comes wrapped in a [*ReloadError].
	ErrKeyMismatch = errors.New("mtls: private key does not match the certificate")
)

// prefix starts the message of every error of this package, once: an error that wraps another error
// of the package, or one of package spiffe, prints the inner message without its prefix.
const prefix = "mtls: "

// unprefixed returns the message of err without the prefix of this package or of package spiffe,
// for an error wrapping it.
func unprefixed(err error) string {
	return strings.TrimPrefix(strings.TrimPrefix(err.Error(), prefix), "spiffe: ")
}

// causeError is a kind (a sentinel error of this package) and its cause, printed on one line under
// one prefix; errors.Is and errors.As see both.
type causeError struct{ kind, cause error }

func (e *causeError) Error() string   { return e.kind.Error() + ": " + unprefixed(e.cause) }
func (e *causeError) Unwrap() []error { return []error{e.kind, e.cause} }

// noBundleError is returned by the bundle sources of this package for a trust domain they have no
// bundle for; it matches spiffe.ErrNoBundle, as the spiffe.BundleSource contract says.
type noBundleError struct {
	td   spiffe.TrustDomain
	held spiffe.TrustDomain // a FileSource's own trust domain, zero for a StaticSource
}

func (e *noBundleError) Error() string {
	s := prefix + "no bundle for trust domain " + strconv.Quote(e.td.Name())
	if !e.held.IsZero() {
		s += " (files hold " + strconv.Quote(e.held.Name()) + ")"
	}
	return s
}

func (e *noBundleError) Unwrap() error { return spiffe.ErrNoBundle }

// Reason classifies the outcome of a handshake. The set is small and fixed, so it can be used as a
// metric label.
type Reason uint8

// Handshake outcomes.
const (
	ReasonOK                 Reason = iota // handshake completed, peer verified and authorized
	ReasonNoCertificate                    // peer sent no certificate
	ReasonBadCertificate                   // peer's leaf is not a valid identity document
	ReasonUnknownTrustDomain               // no bundle for the peer's trust domain
	ReasonUntrusted                        // chain does not verify (unknown CA, bad signature, ...)
	ReasonExpired                          // a certificate in the chain has expired
	ReasonNotYetValid                      // a certificate in the chain is not valid yet
	ReasonUnauthorized                     // identity refused by the Authorizer
	ReasonRejected                         // the peer aborted the handshake with an alert
	ReasonProtocol                         // not TLS, TLS < 1.3, no common ALPN or cipher, ...
	ReasonTimeout                          // deadline or context deadline
	ReasonCanceled                         // context canceled
	ReasonIO                               // connection closed or reset
	ReasonLocal                            // our own SVID could not be obtained
	ReasonOther                            // anything else
	numReasons
)

var reasonNames = [numReasons]string{
	"ok", "no_certificate", "bad_certificate", "unknown_trust_domain", "untrusted",
	"expired", "not_yet_valid", "unauthorized", "rejected", "protocol", "timeout",
	"canceled", "io", "local", "other",
}

var reasonErrs = [numReasons]error{
	ReasonNoCertificate:      ErrNoPeerCertificate,
	ReasonBadCertificate:     ErrBadCertificate,
	ReasonUnknownTrustDomain: ErrUnknownTrustDomain,
	ReasonUntrusted:          ErrUntrusted,
	ReasonExpired:            ErrExpired,
	ReasonNotYetValid:        ErrNotYetValid,
	ReasonUnauthorized:       ErrUnauthorized,
}

// String returns the reason as a metric-label friendly word: "ok", "no_certificate",
// "bad_certificate", "unknown_trust_domain", "untrusted", "expired", "not_yet_valid",
// "unauthorized", "rejected", "protocol", "timeout", "canceled", "io", "local" or "other".
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "other"
}

// Reasons returns every Reason, in order, so that a metrics backend can pre-create one series per
// value.
func Reasons() []Reason {
	out := make([]Reason, numReasons)
	for i := range out {
		out[i] = Reason(i)
	}
	return out
}

// VerifyError is returned (through the TLS handshake) when the peer's certificate is refused by
// this side. It matches the sentinel error of its Reason with errors.Is, and its cause (for example
// an x509.CertificateInvalidError or the Authorizer's error) with errors.As.
type VerifyError struct {
	Reason Reason    // why the peer was refused; never ReasonOK
	PeerID spiffe.ID // the peer's claimed identity, when it could be read
	Err    error     // the cause, may be nil
}

// Error implements error.
func (e *VerifyError) Error() string {
	s := "mtls: peer refused (" + e.Reason.String() + ")"
	if !e.PeerID.IsZero() {
		s += " " + e.PeerID.String()
	}
	if e.Err != nil {
		s += ": " + unprefixed(e.Err)
	}
	return s
}

// Unwrap returns the sentinel error of the reason and the cause.
func (e *VerifyError) Unwrap() []error {
	var errs []error
	if e.Reason < numReasons && reasonErrs[e.Reason] != nil {
		errs = append(errs, reasonErrs[e.Reason])
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Classify maps an error returned by a handshake, or by the first Read or Write after it, to a
// Reason. A nil error is ReasonOK.
func Classify(err error) Reason {
	if err == nil {
		return ReasonOK
	}
	if ve, ok := errors.AsType[*VerifyError](err); ok {
		return ve.Reason
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return ReasonUntrusted // crypto/tls's own verification (not a config of this package)
	}
	if errors.Is(err, ErrNoSVID) || errors.Is(err, ErrNoSVIDSource) || errors.Is(err, ErrNoBundleSource) {
		return ReasonLocal
	}
	if errors.Is(err, context.Canceled) {
		return ReasonCanceled
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return ReasonTimeout
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "remote error" {
		return ReasonRejected
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return ReasonProtocol
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return ReasonTimeout
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return ReasonIO
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return ReasonIO
	}
	// crypto/tls reports version, cipher and ALPN mismatches as plain errors whose text starts with
	// "tls:"; the local alert it sends is not exposed.
	if s := err.Error(); len(s) > 4 && s[:4] == "tls:" {
		return ReasonProtocol
	}
	return ReasonOther
}
