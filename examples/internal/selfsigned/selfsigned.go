// Package selfsigned makes throw-away self-signed TLS certificates for the
// example programs and their tests.
//
// The certificates are ECDSA P-256, valid for a day (starting an hour ago, to
// tolerate clock skew), and carry the given names as DNS or IP subject
// alternative names. They are meant for loopback demos, never for production.
package selfsigned

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// ErrNoName is returned by New when neither a common name nor a host is given.
var ErrNoName = errors.New("selfsigned: a common name or at least one host is required")

// New returns a self-signed certificate whose subject common name is
// commonName and whose subject alternative names are hosts: each host that
// parses as an IP address becomes an IP SAN, every other one (wildcards such
// as "*.example.test" included) a DNS SAN. The returned certificate has Leaf
// set, so callers can add it to an x509.CertPool with AddCert(cert.Leaf).
func New(commonName string, hosts ...string) (tls.Certificate, error) {
	if commonName == "" && len(hosts) == 0 {
		return tls.Certificate{}, ErrNoName
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("selfsigned: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("selfsigned: serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"sniff example"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed: it is its own trust anchor in a CertPool
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("selfsigned: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("selfsigned: parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Pool returns a certificate pool that trusts exactly the given certificates'
// leaves (as returned by New).
func Pool(certs ...tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		if c.Leaf != nil {
			p.AddCert(c.Leaf)
		}
	}
	return p
}
