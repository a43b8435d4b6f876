// Package spiffe is the SPIFFE vocabulary of sniff: SPIFFE IDs and trust domains, X.509-SVIDs, trust
// bundles, the sources that hand them out, and the verification of an X.509-SVID against a bundle.
//
// It follows the SPIFFE ID and X.509-SVID specifications
// (https://github.com/spiffe/spiffe/tree/main/standards) and depends on the standard library only,
// so a module that imports sniff's mtls package gets no gRPC, JOSE or Workload API client in its
// module graph. A workload that takes its SVIDs from a SPIRE agent through go-spiffe's Workload API
// adapts go-spiffe's sources in one line with the module github.com/sniffsplice/sniff/spiffe/gospiffe:
//
//	src, err := workloadapi.NewX509Source(ctx)
//	...
//	cfg := mtls.Config{SVID: gospiffe.SVIDSource(src), Bundle: gospiffe.BundleSource(src)}
//
// A SPIFFE ID (spiffe://trust-domain/path) is accepted by [ParseID] only when it is valid by the
// specification: the scheme "spiffe"; a trust domain of lowercase letters, digits, '.', '-' and '_'
// of at most [MaxTrustDomainLength] bytes; a path of segments of letters, digits, '.', '-' and '_'
// with no empty, "." or ".." segment and no trailing slash; no port, user info, query or fragment;
// at most [MaxIDLength] bytes in all. An [ID] or [TrustDomain] value is therefore always valid (or
// zero), and IDs compare with ==.
//
// An X.509-SVID is valid ([VerifySVID], [ParseSVID]) when its leaf has exactly one URI SAN, a SPIFFE
// ID, is not a CA, has the digitalSignature key usage and neither keyCertSign nor cRLSign; each
// further certificate of the chain is a CA with keyCertSign; and the chain verifies against the
// bundle of the leaf ID's trust domain.
//
// Errors are values: every error of the package matches one of [ErrInvalidID],
// [ErrInvalidTrustDomain], [ErrInvalidSVID], [ErrInvalidBundle], [ErrNoBundle] or [ErrUntrusted]
// with errors.Is. Only the Must functions panic.
package spiffe
