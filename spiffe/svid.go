package spiffe

import (
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/sniffsplice/sniff/internal/pemfile"
)

// SVID is an X.509-SVID: a workload's SPIFFE ID, its certificate chain (the leaf first, then the
// intermediates, if any, without the root) and the leaf's private key.
type SVID struct {
	ID           ID
	Certificates []*x509.Certificate
	PrivateKey   crypto.Signer
}

// SVIDSource gives the current X.509-SVID of a workload. mtls's StaticSource and FileSource
// implement it; gospiffe.SVIDSource adapts go-spiffe's x509svid.Source (and so a SPIRE agent's
// Workload API).
//
// SVID must be safe for concurrent use: mutual TLS calls it on every handshake. Returning the same
// *SVID until it rotates lets a caller cache what it derives from it.
type SVIDSource interface {
	SVID() (*SVID, error)
}

// Marshal returns the certificate chain as PEM CERTIFICATE blocks and the private key as a PEM
// PKCS#8 PRIVATE KEY block, as ParseSVID reads them. Errors match [ErrInvalidSVID].
func (s *SVID) Marshal() (certPEM, keyPEM []byte, err error) {
	if len(s.Certificates) == 0 {
		return nil, nil, &specError{kinds: []error{ErrInvalidSVID}, detail: "no certificates"}
	}
	if s.PrivateKey == nil {
		return nil, nil, &specError{kinds: []error{ErrInvalidSVID}, detail: "no private key"}
	}
	keyPEM, err = pemfile.EncodeKey(s.PrivateKey)
	if err != nil {
		return nil, nil, &specError{kinds: []error{ErrInvalidSVID}, cause: err}
	}
	return pemfile.EncodeCertificates(s.Certificates), keyPEM, nil
}

// ParseSVID parses an X.509-SVID from PEM: certPEM holds the leaf then the intermediates, keyPEM
// the leaf's private key (PKCS#8, SEC 1 or PKCS#1). The certificates must form a valid X.509-SVID
// (see the package documentation; the chain is not verified against a bundle: use [VerifySVID]) and
// the key must belong to the leaf. Errors match [ErrInvalidSVID].
func ParseSVID(certPEM, keyPEM []byte) (*SVID, error) {
	certs, err := pemfile.Certificates(certPEM)
	if err != nil {
		return nil, &specError{kinds: []error{ErrInvalidSVID}, detail: "certificates", cause: err}
	}
	key, err := pemfile.PrivateKey(keyPEM)
	if err != nil {
		return nil, &specError{kinds: []error{ErrInvalidSVID}, detail: "private key", cause: err}
	}
	id, err := checkSVID(certs)
	if err != nil {
		return nil, err
	}
	if !pemfile.KeyMatches(key, certs[0].PublicKey) {
		return nil, &specError{kinds: []error{ErrInvalidSVID}, detail: "the private key does not match the leaf certificate"}
	}
	return &SVID{ID: id, Certificates: certs, PrivateKey: key}, nil
}

// LoadSVID reads the PEM files certFile and keyFile as [ParseSVID] does. Errors match
// [ErrInvalidSVID]; one reading a file also wraps the *fs.PathError.
func LoadSVID(certFile, keyFile string) (*SVID, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, &specError{kinds: []error{ErrInvalidSVID}, cause: err}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, &specError{kinds: []error{ErrInvalidSVID}, cause: err}
	}
	return ParseSVID(certPEM, keyPEM)
}

// IDFromCert returns the SPIFFE ID of a certificate's single URI SAN. It fails, with an error
// matching [ErrInvalidSVID] (and [ErrInvalidID] when the URI is not a SPIFFE ID), when the
// certificate has no URI SAN or more than one. It reads the certificate only: it neither checks the
// rest of the X.509-SVID rules nor verifies the chain.
func IDFromCert(cert *x509.Certificate) (ID, error) {
	switch n := len(cert.URIs); n {
	case 0:
		return ID{}, &specError{kinds: []error{ErrInvalidSVID}, detail: "certificate has no URI SAN"}
	case 1:
	default:
		return ID{}, &specError{kinds: []error{ErrInvalidSVID},
			detail: "certificate has more than one URI SAN (" + strconv.Itoa(n) + ")"}
	}
	id, err := ParseID(cert.URIs[0].String())
	if err != nil {
		return ID{}, &specError{kinds: []error{ErrInvalidSVID}, detail: "URI SAN", cause: err}
	}
	return id, nil
}

// VerifySVID verifies the X.509-SVID chain (the leaf first, then intermediates) against the bundle
// of the leaf ID's trust domain, taken from bundles, at the time now (the zero time: the current
// time). It returns the leaf's SPIFFE ID and the verified chains, each from the leaf to an
// authority of the bundle.
//
// Errors match [ErrInvalidSVID] when the certificates break the X.509-SVID rules (see the package
// documentation), [ErrNoBundle] when bundles has no bundle for the trust domain, and [ErrUntrusted]
// when the chain does not verify; the ID is returned with the latter two.
func VerifySVID(chain []*x509.Certificate, bundles BundleSource, now time.Time) (ID, [][]*x509.Certificate, error) {
	id, err := checkSVID(chain)
	if err != nil {
		return ID{}, nil, err
	}
	if bundles == nil {
		return id, nil, noBundle(id.TrustDomain())
	}
	b, err := bundles.BundleFor(id.TrustDomain())
	if err != nil || b == nil {
		e := noBundle(id.TrustDomain()).(*specError)
		e.cause = err
		return id, nil, e
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, a := range b.authorities {
		opts.Roots.AddCert(a)
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := chain[0].Verify(opts)
	if err != nil {
		return id, nil, &specError{kinds: []error{ErrUntrusted}, cause: err}
	}
	return id, chains, nil
}

// checkSVID checks the X.509-SVID rules on a chain and returns the leaf's ID.
func checkSVID(chain []*x509.Certificate) (ID, error) {
	if len(chain) == 0 {
		return ID{}, &specError{kinds: []error{ErrInvalidSVID}, detail: "no certificates"}
	}
	for _, c := range chain {
		if c == nil {
			return ID{}, &specError{kinds: []error{ErrInvalidSVID}, detail: "nil certificate"}
		}
	}
	leaf := chain[0]
	id, err := IDFromCert(leaf)
	if err != nil {
		return ID{}, err
	}
	if err := checkLeaf(leaf); err != nil {
		return ID{}, &specError{kinds: []error{ErrInvalidSVID}, detail: err.Error()}
	}
	for i, c := range chain[1:] {
		if !c.IsCA {
			return ID{}, &specError{kinds: []error{ErrInvalidSVID},
				detail: "signing certificate " + strconv.Itoa(i+1) + " is not a CA"}
		}
		if c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return ID{}, &specError{kinds: []error{ErrInvalidSVID},
				detail: "signing certificate " + strconv.Itoa(i+1) + " lacks the keyCertSign key usage"}
		}
	}
	return id, nil
}

// checkLeaf checks the X.509-SVID rules for a leaf other than its URI SAN.
func checkLeaf(leaf *x509.Certificate) error {
	switch {
	case leaf.IsCA:
		return errors.New("leaf certificate is a CA")
	case leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return errors.New("leaf certificate lacks the digitalSignature key usage")
	case leaf.KeyUsage&x509.KeyUsageCertSign != 0:
		return errors.New("leaf certificate has the keyCertSign key usage")
	case leaf.KeyUsage&x509.KeyUsageCRLSign != 0:
		return errors.New("leaf certificate has the cRLSign key usage")
	}
	return nil
}
