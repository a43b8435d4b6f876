package mtls

import (
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/sniffsplice/sniff/spiffe"
)

// IdentityMode selects where a peer's identity is read from.
type IdentityMode uint8

const (
	// IdentitySPIFFE (the zero value) reads the identity from the leaf's single URI SAN, a SPIFFE
	// ID, as the X.509-SVID specification says.
	IdentitySPIFFE IdentityMode = iota
	// IdentityLinkerdDNS also accepts leaves without a URI SAN whose identity is a single DNS SAN
	// of the form <serviceaccount>.<namespace>.serviceaccount.identity.linkerd.<trust-domain>, as
	// Linkerd issues them, mapped to the SPIFFE ID
	// spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount> (see [ParseLinkerdDNS]):
	// authorizers, PeerID and Handshake see that ID, and the bundle of <trust-domain> verifies the
	// chain. A leaf that has a URI SAN is judged by it, as in IdentitySPIFFE, so PeerID (which does
	// not know the mode) always names the identity that was verified.
	IdentityLinkerdDNS
)

const linkerdInfix = ".serviceaccount.identity.linkerd."

// ParseLinkerdDNS maps a Linkerd DNS identity
// (web.default.serviceaccount.identity.linkerd.cluster.local) to the SPIFFE ID this package uses
// for it (spiffe://cluster.local/ns/default/sa/web).
func ParseLinkerdDNS(name string) (spiffe.ID, error) {
	name = strings.TrimSuffix(name, ".")
	i := strings.Index(name, linkerdInfix)
	if i <= 0 {
		return spiffe.ID{}, fmt.Errorf("%w: %q", ErrNotLinkerdIdentity, name)
	}
	tdName := name[i+len(linkerdInfix):]
	sa, ns, ok := strings.Cut(name[:i], ".")
	if !ok || sa == "" || ns == "" || strings.Contains(ns, ".") {
		return spiffe.ID{}, fmt.Errorf("%w: %q", ErrNotLinkerdIdentity, name)
	}
	td, err := spiffe.ParseTrustDomain(tdName)
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("%w: %q: %w", ErrNotLinkerdIdentity, name, err)
	}
	return spiffe.IDFromSegments(td, "ns", ns, "sa", sa)
}

// LinkerdDNS is the inverse of [ParseLinkerdDNS]: it maps spiffe://td/ns/<ns>/sa/<sa> to
// <sa>.<ns>.serviceaccount.identity.linkerd.td.
func LinkerdDNS(id spiffe.ID) (string, error) {
	seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if id.IsZero() || len(seg) != 4 || seg[0] != "ns" || seg[2] != "sa" ||
		strings.Contains(seg[1], ".") || strings.Contains(seg[3], ".") {
		return "", fmt.Errorf("%w: %q has no Linkerd form (want spiffe://td/ns/NS/sa/SA)", ErrNotLinkerdIdentity, id)
	}
	return seg[3] + "." + seg[1] + linkerdInfix + id.TrustDomain().Name(), nil
}

// idFromLeaf reads the identity of a leaf in the given mode.
func idFromLeaf(leaf *x509.Certificate, mode IdentityMode) (spiffe.ID, error) {
	if mode == IdentityLinkerdDNS && len(leaf.URIs) == 0 {
		return linkerdIDFromCert(leaf)
	}
	return spiffe.IDFromCert(leaf)
}

// linkerdIDFromCert returns the identity of the single Linkerd DNS SAN of cert.
func linkerdIDFromCert(cert *x509.Certificate) (spiffe.ID, error) {
	var found spiffe.ID
	n := 0
	for _, name := range cert.DNSNames {
		id, err := ParseLinkerdDNS(name)
		if err != nil {
			continue
		}
		found = id
		n++
	}
	switch n {
	case 0:
		return spiffe.ID{}, fmt.Errorf("certificate has no Linkerd DNS identity")
	case 1:
		return found, nil
	default:
		return spiffe.ID{}, fmt.Errorf("certificate has %d Linkerd DNS identities", n)
	}
}
