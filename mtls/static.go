package mtls

import (
	"errors"
	"sync/atomic"

	"github.com/sniffsplice/sniff/spiffe"
)

// StaticSource is an in-memory [spiffe.SVIDSource] and [spiffe.BundleSource] whose SVID and bundles can
// be replaced at any time (SetSVID, SetBundles): the next handshake uses the new ones. The zero
// value has neither and is ready to use; it is safe for concurrent use.
type StaticSource struct {
	svid    atomic.Pointer[spiffe.SVID]
	bundles atomic.Pointer[spiffe.BundleSet]
}

// NewStaticSource returns a StaticSource holding svid (may be nil) and bundles.
func NewStaticSource(svid *spiffe.SVID, bundles ...*spiffe.Bundle) *StaticSource {
	s := &StaticSource{}
	s.SetSVID(svid)
	s.SetBundles(bundles...)
	return s
}

// SetSVID replaces the SVID; nil removes it.
func (s *StaticSource) SetSVID(svid *spiffe.SVID) { s.svid.Store(svid) }

// SetBundles replaces all bundles.
func (s *StaticSource) SetBundles(bundles ...*spiffe.Bundle) {
	s.bundles.Store(spiffe.NewBundleSet(bundles...))
}

// ErrSourceEmpty is returned by a StaticSource that holds no SVID.
var ErrSourceEmpty = errors.New("mtls: source holds no SVID")

// SVID implements spiffe.SVIDSource.
func (s *StaticSource) SVID() (*spiffe.SVID, error) {
	if v := s.svid.Load(); v != nil {
		return v, nil
	}
	return nil, ErrSourceEmpty
}

// BundleFor implements spiffe.BundleSource.
func (s *StaticSource) BundleFor(td spiffe.TrustDomain) (*spiffe.Bundle, error) {
	if set := s.bundles.Load(); set != nil {
		if b, ok := set.Get(td); ok {
			return b, nil
		}
	}
	return nil, &noBundleError{td: td}
}
