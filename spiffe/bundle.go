package spiffe

import (
	"crypto/x509"
	"os"
	"slices"

	"github.com/sniffsplice/sniff/internal/pemfile"
)

// BundleSource gives the X.509 bundle (trust anchors) of a trust domain. [Bundle], [BundleSet] and
// mtls's StaticSource and FileSource implement it; gospiffe.BundleSource adapts go-spiffe's
// x509bundle.Source (and so a SPIRE agent's Workload API).
//
// BundleFor returns an error matching [ErrNoBundle] when it has no bundle for td. It must be safe
// for concurrent use: mutual TLS calls it on every handshake.
type BundleSource interface {
	BundleFor(td TrustDomain) (*Bundle, error)
}

// Bundle is the X.509 trust anchors of one trust domain. It is immutable and safe for concurrent
// use.
type Bundle struct {
	td          TrustDomain
	authorities []*x509.Certificate
}

// NewBundle returns the bundle of td holding the given authorities (nil ones are left out).
func NewBundle(td TrustDomain, authorities ...*x509.Certificate) *Bundle {
	b := &Bundle{td: td, authorities: make([]*x509.Certificate, 0, len(authorities))}
	for _, a := range authorities {
		if a != nil {
			b.authorities = append(b.authorities, a)
		}
	}
	return b
}

// ParseBundle returns the bundle of td holding the certificates of pemData: one or more PEM
// CERTIFICATE blocks and nothing else. Errors match [ErrInvalidBundle].
func ParseBundle(td TrustDomain, pemData []byte) (*Bundle, error) {
	certs, err := pemfile.Certificates(pemData)
	if err != nil {
		return nil, &specError{kinds: []error{ErrInvalidBundle}, cause: err}
	}
	return NewBundle(td, certs...), nil
}

// LoadBundle reads the PEM file at path as [ParseBundle] does. Errors match [ErrInvalidBundle];
// one reading the file also wraps the *fs.PathError.
func LoadBundle(td TrustDomain, path string) (*Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &specError{kinds: []error{ErrInvalidBundle}, cause: err}
	}
	b, err := ParseBundle(td, data)
	if err != nil {
		return nil, &specError{kinds: []error{ErrInvalidBundle}, input: path, quote: true, cause: errorsCause(err)}
	}
	return b, nil
}

// errorsCause returns the cause of an error of this package, for rewrapping it.
func errorsCause(err error) error {
	if e, ok := err.(*specError); ok && e.cause != nil {
		return e.cause
	}
	return err
}

// TrustDomain returns the bundle's trust domain.
func (b *Bundle) TrustDomain() TrustDomain { return b.td }

// Authorities returns a copy of the bundle's trust anchors.
func (b *Bundle) Authorities() []*x509.Certificate { return slices.Clone(b.authorities) }

// BundleFor implements [BundleSource]: it returns b for its own trust domain.
func (b *Bundle) BundleFor(td TrustDomain) (*Bundle, error) {
	if b == nil || td != b.td {
		return nil, noBundle(td)
	}
	return b, nil
}

// Marshal returns the authorities as PEM CERTIFICATE blocks, as ParseBundle reads them.
func (b *Bundle) Marshal() ([]byte, error) {
	return pemfile.EncodeCertificates(b.authorities), nil
}

func noBundle(td TrustDomain) error {
	return &specError{kinds: []error{ErrNoBundle}, input: td.name, quote: true}
}

// BundleSet is an immutable set of bundles, at most one per trust domain: a [BundleSource] for
// several (federated) trust domains. A nil *BundleSet is empty. It is safe for concurrent use.
type BundleSet struct {
	m map[TrustDomain]*Bundle
}

// NewBundleSet returns a set of the given bundles; of two bundles of the same trust domain, the
// later is kept. Nil bundles are left out.
func NewBundleSet(bundles ...*Bundle) *BundleSet {
	s := &BundleSet{m: make(map[TrustDomain]*Bundle, len(bundles))}
	for _, b := range bundles {
		if b != nil {
			s.m[b.td] = b
		}
	}
	return s
}

// Get returns the bundle of td, if the set has one.
func (s *BundleSet) Get(td TrustDomain) (*Bundle, bool) {
	if s == nil {
		return nil, false
	}
	b, ok := s.m[td]
	return b, ok
}

// BundleFor implements [BundleSource].
func (s *BundleSet) BundleFor(td TrustDomain) (*Bundle, error) {
	if b, ok := s.Get(td); ok {
		return b, nil
	}
	return nil, noBundle(td)
}
