// Package gospiffe adapts go-spiffe's types to sniff's package spiffe, for a workload that takes its
// X.509-SVIDs and bundles from a SPIRE agent through go-spiffe's Workload API client:
//
//	src, err := workloadapi.NewX509Source(ctx)
//	if err != nil {
//		return err
//	}
//	defer src.Close()
//	cfg := &mtls.Config{SVID: gospiffe.SVIDSource(src), Bundle: gospiffe.BundleSource(src)}
//
// It is a module of its own (github.com/sniffsplice/sniff/spiffe/gospiffe) so that go-spiffe, and
// the gRPC its go.mod requires, reach only the users who import it.
//
// The sources convert what go-spiffe hands out on every call, and keep the last conversion for as
// long as go-spiffe returns the same *x509svid.SVID or *x509bundle.Bundle (a workloadapi.X509Source
// does until it rotates them), so a handshake costs no conversion and mtls's certificate cache stays
// warm. Conversion fails only for an ID longer than spiffe.MaxIDLength or a trust domain longer than
// spiffe.MaxTrustDomainLength, which go-spiffe accepts and the SPIFFE specification does not.
package gospiffe

import (
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/sniffsplice/sniff/spiffe"
)

// ID converts a go-spiffe SPIFFE ID; the zero ID converts to the zero ID. Errors match
// spiffe.ErrInvalidID.
func ID(id spiffeid.ID) (spiffe.ID, error) {
	if id.IsZero() {
		return spiffe.ID{}, nil
	}
	return spiffe.ParseID(id.String())
}

// TrustDomain converts a go-spiffe trust domain; the zero value converts to the zero value. Errors
// match spiffe.ErrInvalidTrustDomain.
func TrustDomain(td spiffeid.TrustDomain) (spiffe.TrustDomain, error) {
	if td.IsZero() {
		return spiffe.TrustDomain{}, nil
	}
	return spiffe.ParseTrustDomain(td.Name())
}

// SVID converts a go-spiffe X.509-SVID. The certificates and the key are shared, not copied. It
// does not check the X.509-SVID rules again (go-spiffe's parser did, and the peer verifies them).
// Errors match spiffe.ErrInvalidID; a nil SVID is an error matching spiffe.ErrInvalidSVID.
func SVID(s *x509svid.SVID) (*spiffe.SVID, error) {
	if s == nil {
		return nil, errNilSVID
	}
	id, err := ID(s.ID)
	if err != nil {
		return nil, err
	}
	return &spiffe.SVID{ID: id, Certificates: s.Certificates, PrivateKey: s.PrivateKey}, nil
}

// Bundle converts a go-spiffe X.509 bundle (its authorities; the certificates are shared). Errors
// match spiffe.ErrInvalidTrustDomain; a nil bundle is an error matching spiffe.ErrNoBundle.
func Bundle(b *x509bundle.Bundle) (*spiffe.Bundle, error) {
	if b == nil {
		return nil, errNilBundle
	}
	td, err := TrustDomain(b.TrustDomain())
	if err != nil {
		return nil, err
	}
	return spiffe.NewBundle(td, b.X509Authorities()...), nil
}

var (
	errNilSVID   = wrap(spiffe.ErrInvalidSVID, "go-spiffe source returned a nil SVID")
	errNilBundle = wrap(spiffe.ErrNoBundle, "go-spiffe source returned a nil bundle")
)

// gospiffeError is a sentinel of package spiffe with this package's detail, on one line.
type gospiffeError struct {
	kind   error
	detail string
}

func wrap(kind error, detail string) error { return &gospiffeError{kind, detail} }

func (e *gospiffeError) Error() string { return e.kind.Error() + ": " + e.detail }
func (e *gospiffeError) Unwrap() error { return e.kind }

// SVIDSource adapts a go-spiffe X.509-SVID source (such as a *workloadapi.X509Source) to a
// spiffe.SVIDSource. Errors of src are returned as they are.
func SVIDSource(src x509svid.Source) spiffe.SVIDSource {
	return &svidSource{src: src}
}

type svidSource struct {
	src  x509svid.Source
	last atomic.Pointer[svidEntry]
}

type svidEntry struct {
	theirs *x509svid.SVID
	ours   *spiffe.SVID
}

// SVID implements spiffe.SVIDSource.
func (s *svidSource) SVID() (*spiffe.SVID, error) {
	theirs, err := s.src.GetX509SVID()
	if err != nil {
		return nil, err
	}
	if e := s.last.Load(); e != nil && e.theirs == theirs {
		return e.ours, nil
	}
	ours, err := SVID(theirs)
	if err != nil {
		return nil, err
	}
	s.last.Store(&svidEntry{theirs: theirs, ours: ours})
	return ours, nil
}

// BundleSource adapts a go-spiffe X.509 bundle source (such as a *workloadapi.X509Source or an
// *x509bundle.Set) to a spiffe.BundleSource. Errors of src are returned wrapped so that they also
// match spiffe.ErrNoBundle.
func BundleSource(src x509bundle.Source) spiffe.BundleSource {
	return &bundleSource{src: src}
}

type bundleSource struct {
	src x509bundle.Source
	// last conversion per trust domain: as many entries as trust domains src has bundles for.
	last sync.Map // spiffe.TrustDomain -> *bundleEntry
}

type bundleEntry struct {
	theirs *x509bundle.Bundle
	ours   *spiffe.Bundle
}

// BundleFor implements spiffe.BundleSource.
func (s *bundleSource) BundleFor(td spiffe.TrustDomain) (*spiffe.Bundle, error) {
	theirTD, err := spiffeid.TrustDomainFromString(td.Name())
	if err != nil {
		return nil, &noBundleError{err} // the zero trust domain
	}
	theirs, err := s.src.GetX509BundleForTrustDomain(theirTD)
	if err != nil {
		return nil, &noBundleError{err}
	}
	if v, ok := s.last.Load(td); ok && v.(*bundleEntry).theirs == theirs {
		return v.(*bundleEntry).ours, nil
	}
	ours, err := Bundle(theirs)
	if err != nil {
		return nil, err
	}
	if ours.TrustDomain() != td {
		return nil, wrap(spiffe.ErrNoBundle, "go-spiffe source returned the bundle of "+ours.TrustDomain().Name()+
			" for "+td.Name())
	}
	s.last.Store(td, &bundleEntry{theirs: theirs, ours: ours})
	return ours, nil
}

// noBundleError is an error of a go-spiffe bundle source, which also matches spiffe.ErrNoBundle.
type noBundleError struct{ err error }

func (e *noBundleError) Error() string { return e.err.Error() }
func (e *noBundleError) Unwrap() []error {
	return []error{spiffe.ErrNoBundle, e.err}
}
