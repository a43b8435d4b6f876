package mtls

import (
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/sniffsplice/sniff/spiffe"
)

// An Authorizer decides whether a verified peer may connect. It is called only after the peer's
// chain has been verified against the bundle of its trust domain, with the peer's identity and the
// verified chains. A non-nil error refuses the handshake; it is wrapped in a [*VerifyError] with
// [ReasonUnauthorized], so callers can still reach it with errors.As.
//
// An Authorizer must be safe for concurrent use; it runs on every handshake, including resumed
// ones.
type Authorizer func(id spiffe.ID, verifiedChains [][]*x509.Certificate) error

// AuthorizeAny accepts any peer whose chain verified, from any trust domain the bundle source
// knows.
func AuthorizeAny() Authorizer {
	return func(spiffe.ID, [][]*x509.Certificate) error { return nil }
}

// AuthorizeID accepts exactly the given identity.
func AuthorizeID(id spiffe.ID) Authorizer {
	return func(peer spiffe.ID, _ [][]*x509.Certificate) error {
		if peer != id {
			return fmt.Errorf("peer %q is not %q", peer, id)
		}
		return nil
	}
}

// AuthorizeOneOf accepts any of the given identities.
func AuthorizeOneOf(ids ...spiffe.ID) Authorizer {
	set := make(map[spiffe.ID]struct{}, len(ids))
	for _, id := range ids {
		set[id] = struct{}{}
	}
	return func(peer spiffe.ID, _ [][]*x509.Certificate) error {
		if _, ok := set[peer]; !ok {
			return fmt.Errorf("peer %q is not one of the %d allowed identities", peer, len(set))
		}
		return nil
	}
}

// AuthorizeMemberOf accepts any identity of the trust domain td.
func AuthorizeMemberOf(td spiffe.TrustDomain) Authorizer {
	return func(peer spiffe.ID, _ [][]*x509.Certificate) error {
		if !peer.MemberOf(td) {
			return fmt.Errorf("peer %q is not a member of trust domain %q", peer, td)
		}
		return nil
	}
}

// AuthorizePrefix accepts identities in the trust domain of prefix whose path is prefix's path or
// lies below it, segment-wise: spiffe://td/ns/prod accepts spiffe://td/ns/prod and
// spiffe://td/ns/prod/sa/web but not spiffe://td/ns/production. A prefix with an empty path accepts
// the whole trust domain.
func AuthorizePrefix(prefix spiffe.ID) Authorizer {
	td, p := prefix.TrustDomain(), strings.TrimSuffix(prefix.Path(), "/")
	return func(peer spiffe.ID, _ [][]*x509.Certificate) error {
		if peer.TrustDomain() == td {
			pp := peer.Path()
			if p == "" || pp == p || (strings.HasPrefix(pp, p) && pp[len(p)] == '/') {
				return nil
			}
		}
		return fmt.Errorf("peer %q is not under %q", peer, prefix)
	}
}

// AuthorizeFunc adapts a predicate on the peer identity to an Authorizer.
func AuthorizeFunc(allow func(spiffe.ID) bool) Authorizer {
	return func(peer spiffe.ID, _ [][]*x509.Certificate) error {
		if allow == nil || !allow(peer) {
			return fmt.Errorf("peer %q refused", peer)
		}
		return nil
	}
}
