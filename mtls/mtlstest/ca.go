// Package mtlstest is an in-memory certificate authority for tests and examples of mutual TLS with
// SPIFFE identities.
//
// A [CA] (ECDSA P-256) issues X.509-SVIDs with any SPIFFE ID and lifetime, issues intermediate CAs,
// and on request issues deliberately bad certificates — expired, not yet valid, from another trust
// domain, with two URI SANs, with the CA flag set — so that verification failures can be tested
// against real handshakes. [CA.Source] returns an [mtls.StaticSource] (both a [spiffe.SVIDSource] and
// a [spiffe.BundleSource]) ready for an [mtls.Config]; [WritePEM] writes the files openssl and
// [mtls.FileSource] read.
//
// [New] returns an error for an invalid trust domain and [MustNew] panics, by the Go naming
// convention. The methods Issue, IssueLinkerd, ID, Intermediate and Source panic on an invalid
// SPIFFE ID, like spiffe's Must functions, because they are meant for tests; [CA.TryIssue]
// returns the error instead.
package mtlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/spiffe"
)

// DefaultLifetime is the lifetime of an SVID issued without WithLifetime or WithValidity.
const DefaultLifetime = time.Hour

// CA is an in-memory certificate authority of one trust domain, either a root (from New or MustNew)
// or an intermediate (from CA.Intermediate). It is safe for concurrent use.
type CA struct {
	td    spiffe.TrustDomain
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	chain []*x509.Certificate // this CA and its parents up to, excluding, the root
	root  *x509.Certificate
}

// New returns a new root CA for the trust domain td ("example.org" or "spiffe://example.org").
func New(td string) (*CA, error) {
	trust, err := spiffe.ParseTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("mtlstest: %w", err)
	}
	return newRoot(trust)
}

// MustNew is New for tests and examples: it panics if td is not a valid trust domain.
func MustNew(td string) *CA {
	ca, err := New(td)
	if err != nil {
		panic(err)
	}
	return ca
}

func newRoot(td spiffe.TrustDomain) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"mtlstest"}, CommonName: "root CA " + td.Name()},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{td: td, cert: cert, key: key, root: cert}, nil
}

// TrustDomain returns the CA's trust domain.
func (ca *CA) TrustDomain() spiffe.TrustDomain { return ca.td }

// Certificate returns the CA's own certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Root returns the root certificate at the top of this CA's chain.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Bundle returns a new bundle of the CA's trust domain holding its root.
func (ca *CA) Bundle() *spiffe.Bundle {
	return spiffe.NewBundle(ca.td, ca.root)
}

// BundlePEM returns the root certificate in PEM, as openssl's -CAfile wants it.
func (ca *CA) BundlePEM() []byte {
	b, _ := ca.Bundle().Marshal() // never fails
	return b
}

// ID returns the SPIFFE ID for a path ("/ns/default/sa/web") or a full ID
// ("spiffe://example.org/x") given as a string; it panics when invalid.
func (ca *CA) ID(id string) spiffe.ID {
	v, err := ca.parseID(id)
	if err != nil {
		panic(err)
	}
	return v
}

func (ca *CA) parseID(id string) (spiffe.ID, error) {
	if strings.HasPrefix(id, "spiffe://") {
		return spiffe.ParseID(id)
	}
	return spiffe.IDFromPath(ca.td, id)
}

// Intermediate returns a new intermediate CA of the same trust domain, signed by ca. SVIDs it
// issues carry the intermediates in their chain and verify against the root's bundle.
func (ca *CA) Intermediate() *CA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"mtlstest"}, CommonName: fmt.Sprintf("intermediate CA %s %d", ca.td.Name(), len(ca.chain)+1)},
		URIs:                  []*url.URL{ca.td.ID().URL()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	chain := append([]*x509.Certificate{cert}, ca.chain...)
	return &CA{td: ca.td, cert: cert, key: key, chain: chain, root: ca.root}
}

// An Option changes an issued certificate.
type Option func(*issueOptions)

type issueOptions struct {
	notBefore, notAfter time.Time
	lifetime            time.Duration
	extraURIs           []*url.URL
	dnsNames            []string
	noURI               bool
	isCA                bool
}

// WithLifetime sets the certificate's lifetime, starting one minute ago.
func WithLifetime(d time.Duration) Option {
	return func(o *issueOptions) { o.lifetime = d }
}

// WithValidity sets the certificate's validity window exactly.
func WithValidity(notBefore, notAfter time.Time) Option {
	return func(o *issueOptions) { o.notBefore, o.notAfter = notBefore, notAfter }
}

// Expired makes a certificate that expired an hour ago.
func Expired() Option {
	return func(o *issueOptions) {
		now := time.Now()
		o.notBefore, o.notAfter = now.Add(-2*time.Hour), now.Add(-time.Hour)
	}
}

// NotYetValid makes a certificate that becomes valid in an hour.
func NotYetValid() Option {
	return func(o *issueOptions) {
		now := time.Now()
		o.notBefore, o.notAfter = now.Add(time.Hour), now.Add(2*time.Hour)
	}
}

// WithExtraURI adds a second URI SAN (an invalid SVID).
func WithExtraURI(uri string) Option {
	return func(o *issueOptions) {
		if u, err := url.Parse(uri); err == nil {
			o.extraURIs = append(o.extraURIs, u)
		}
	}
}

// WithDNSNames adds DNS SANs.
func WithDNSNames(names ...string) Option {
	return func(o *issueOptions) { o.dnsNames = append(o.dnsNames, names...) }
}

// WithoutURI leaves the URI SAN out (a certificate with no SPIFFE ID).
func WithoutURI() Option {
	return func(o *issueOptions) { o.noURI = true }
}

// AsCA sets the CA flag and the certificate-signing key usage on the leaf (an invalid SVID).
func AsCA() Option {
	return func(o *issueOptions) { o.isCA = true }
}

// Issue issues an SVID for id (a path in the CA's trust domain, or a full SPIFFE ID of any trust
// domain — an ID of another trust domain makes a "wrong trust domain" certificate). It panics on an
// invalid ID.
func (ca *CA) Issue(id string, opts ...Option) *spiffe.SVID {
	s, err := ca.TryIssue(id, opts...)
	if err != nil {
		panic(err)
	}
	return s
}

// TryIssue is Issue returning errors instead of panicking. The SVID's chain is the leaf followed by
// the intermediates, if any; the root is not included.
func (ca *CA) TryIssue(id string, opts ...Option) (*spiffe.SVID, error) {
	sid, err := ca.parseID(id)
	if err != nil {
		return nil, err
	}
	o := issueOptions{lifetime: DefaultLifetime}
	for _, opt := range opts {
		opt(&o)
	}
	var uris []*url.URL
	if !o.noURI {
		uris = append(uris, sid.URL())
	}
	uris = append(uris, o.extraURIs...)
	svid, err := ca.issue(o, uris)
	if err != nil {
		return nil, err
	}
	if !o.noURI {
		svid.ID = sid
	}
	return svid, nil
}

// IssueLinkerd issues a certificate whose only identity is the Linkerd DNS SAN name
// (web.default.serviceaccount.identity.linkerd.cluster.local), for mtls.IdentityLinkerdDNS. The
// SVID's ID is the mtls.ParseLinkerdDNS form of name when it has one.
func (ca *CA) IssueLinkerd(name string, opts ...Option) *spiffe.SVID {
	o := issueOptions{lifetime: DefaultLifetime, dnsNames: []string{name}}
	for _, opt := range opts {
		opt(&o)
	}
	svid, err := ca.issue(o, o.extraURIs)
	if err != nil {
		panic(err)
	}
	if id, err := mtls.ParseLinkerdDNS(name); err == nil {
		svid.ID = id
	}
	return svid
}

func (ca *CA) issue(o issueOptions, uris []*url.URL) (*spiffe.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	nb, na := o.notBefore, o.notAfter
	if nb.IsZero() && na.IsZero() {
		nb = time.Now().Add(-time.Minute)
		na = nb.Add(time.Minute + o.lifetime)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"mtlstest"}},
		URIs:                  uris,
		DNSNames:              o.dnsNames,
		NotBefore:             nb,
		NotAfter:              na,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if o.isCA {
		tmpl.IsCA = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &spiffe.SVID{
		Certificates: append([]*x509.Certificate{leaf}, ca.chain...),
		PrivateKey:   key,
	}, nil
}

// Source returns a rotatable source holding a new SVID for id and the CA's bundle, plus the bundles
// of the extra CAs (for federation).
func (ca *CA) Source(id string, federated ...*CA) *mtls.StaticSource {
	bundles := []*spiffe.Bundle{ca.Bundle()}
	for _, f := range federated {
		bundles = append(bundles, f.Bundle())
	}
	return mtls.NewStaticSource(ca.Issue(id), bundles...)
}

// Files names the files written by WritePEM.
type Files struct {
	Cert   string // leaf then intermediates, PEM
	Key    string // PKCS#8 private key, PEM
	Bundle string // trust anchors, PEM
}

// WritePEM writes svid's chain and key and bundle's authorities as PEM files named prefix.crt,
// prefix.key and prefix-bundle.crt in dir, with mode 0600. Each file is written in place (not
// renamed), as a test wants for provoking a reload.
func WritePEM(dir, prefix string, svid *spiffe.SVID, bundle *spiffe.Bundle) (Files, error) {
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return Files{}, err
	}
	bundlePEM, err := bundle.Marshal()
	if err != nil {
		return Files{}, err
	}
	f := Files{
		Cert:   filepath.Join(dir, prefix+".crt"),
		Key:    filepath.Join(dir, prefix+".key"),
		Bundle: filepath.Join(dir, prefix+"-bundle.crt"),
	}
	for _, w := range []struct {
		name string
		data []byte
	}{{f.Cert, certPEM}, {f.Key, keyPEM}, {f.Bundle, bundlePEM}} {
		if err := os.WriteFile(w.name, w.data, 0o600); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 127)

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}
