package spiffe_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

func ExampleParseID() {
	id, err := spiffe.ParseID("spiffe://example.org/ns/default/sa/web")
	if err != nil {
		panic(err)
	}
	fmt.Println(id.TrustDomain(), id.Path())
	fmt.Println(id.MemberOf(spiffe.MustParseTrustDomain("example.org")))

	for _, s := range []string{"spiffe://Example.org/web", "spiffe://example.org/web/", "spiffe://example.org:8443/web"} {
		_, err := spiffe.ParseID(s)
		fmt.Println(errors.Is(err, spiffe.ErrInvalidID), err)
	}
	// Output:
	// example.org /ns/default/sa/web
	// true
	// true spiffe: invalid SPIFFE ID "spiffe://Example.org/web": trust domain characters are limited to lowercase letters, digits, '.', '-' and '_' (uppercase?)
	// true spiffe: invalid SPIFFE ID "spiffe://example.org/web/": path has a trailing slash
	// true spiffe: invalid SPIFFE ID "spiffe://example.org:8443/web": trust domain characters are limited to lowercase letters, digits, '.', '-' and '_' (a port?)
}

func ExampleIDFromSegments() {
	td := spiffe.MustParseTrustDomain("cluster.local")
	id, err := spiffe.IDFromSegments(td, "ns", "default", "sa", "web")
	fmt.Println(id, err)
	_, err = spiffe.IDFromSegments(td, "ns", "default/sa")
	fmt.Println(err)
	// Output:
	// spiffe://cluster.local/ns/default/sa/web <nil>
	// spiffe: invalid SPIFFE ID "default/sa": path segment: path characters are limited to letters, digits, '.', '-' and '_'
}

func ExampleParseTrustDomain() {
	for _, s := range []string{"example.org", "spiffe://example.org", "spiffe://example.org/web"} {
		td, err := spiffe.ParseTrustDomain(s)
		fmt.Printf("%q %v\n", td.Name(), err)
	}
	// Output:
	// "example.org" <nil>
	// "example.org" <nil>
	// "" spiffe: invalid trust domain "spiffe://example.org/web": a trust domain ID has no path
}

func ExampleVerifySVID() {
	// An X.509-SVID from an in-memory CA, verified against the bundles of two trust domains.
	ca, partner := mtlstest.MustNew("example.org"), mtlstest.MustNew("partner.org")
	bundles := spiffe.NewBundleSet(ca.Bundle(), partner.Bundle())

	svid := ca.Intermediate().Issue("/ns/default/sa/web")
	id, chains, err := spiffe.VerifySVID(svid.Certificates, bundles, time.Time{})
	fmt.Println(id, len(chains[0]), err)

	// example.org's CA cannot vouch for a partner.org identity.
	forged := ca.Issue("spiffe://partner.org/admin")
	_, _, err = spiffe.VerifySVID(forged.Certificates, bundles, time.Time{})
	fmt.Println(errors.Is(err, spiffe.ErrUntrusted))

	// A CA certificate is no X.509-SVID.
	_, _, err = spiffe.VerifySVID(ca.Issue("/web", mtlstest.AsCA()).Certificates, bundles, time.Time{})
	fmt.Println(errors.Is(err, spiffe.ErrInvalidSVID), err)
	// Output:
	// spiffe://example.org/ns/default/sa/web 3 <nil>
	// true
	// true spiffe: invalid X.509-SVID: leaf certificate is a CA
}

func ExampleNewBundleSet() {
	a, b := mtlstest.MustNew("a.test"), mtlstest.MustNew("b.test")
	set := spiffe.NewBundleSet(a.Bundle(), b.Bundle())
	bundle, err := set.BundleFor(spiffe.MustParseTrustDomain("b.test"))
	fmt.Println(bundle.TrustDomain(), len(bundle.Authorities()), err)
	_, err = set.BundleFor(spiffe.MustParseTrustDomain("c.test"))
	fmt.Println(errors.Is(err, spiffe.ErrNoBundle), err)
	// Output:
	// b.test 1 <nil>
	// true spiffe: no bundle for the trust domain "c.test"
}
