package mtls

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// StaticSource is an in-memory [x509svid.Source] and [x509bundle.Source] whose SVID and bundles can
// be replaced at any time (SetSVID, SetBundles): the next handshake uses the new ones. The zero
// value has neither and is ready to use; it is safe for concurrent use.
type StaticSource struct {
	svid    atomic.Pointer[x509svid.SVID]
	bundles atomic.Pointer[x509bundle.Set]
}

// NewStaticSource returns a StaticSource holding svid (may be nil) and bundles.
func NewStaticSource(svid *x509svid.SVID, bundles ...*x509bundle.Bundle) *StaticSource {
	s := &StaticSource{}
	s.SetSVID(svid)
	s.SetBundles(bundles...)
	return s
}

// SetSVID replaces the SVID; nil removes it.
func (s *StaticSource) SetSVID(svid *x509svid.SVID) { s.svid.Store(svid) }

// SetBundles replaces all bundles.
func (s *StaticSource) SetBundles(bundles ...*x509bundle.Bundle) {
	s.bundles.Store(x509bundle.NewSet(bundles...))
}

// ErrSourceEmpty is returned by a StaticSource that holds no SVID.
var ErrSourceEmpty = errors.New("mtls: source holds no SVID")

// GetX509SVID implements x509svid.Source.
func (s *StaticSource) GetX509SVID() (*x509svid.SVID, error) {
	if v := s.svid.Load(); v != nil {
		return v, nil
	}
	return nil, ErrSourceEmpty
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *StaticSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if set := s.bundles.Load(); set != nil {
		if b, ok := set.Get(td); ok {
			return b, nil
		}
	}
	return nil, fmt.Errorf("mtls: no bundle for trust domain %q", td)
}
