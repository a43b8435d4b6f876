package spiffe_test

import (
	"crypto/x509"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

// compareID checks that ParseID and go-spiffe's FromString agree on s: both accept it, as the same
// trust domain and path, or both refuse it; the one allowed difference is an input over the
// specification's limits, which go-spiffe accepts.
func compareID(t *testing.T, s string) {
	t.Helper()
	ours, ourErr := spiffe.ParseID(s)
	theirs, theirErr := spiffeid.FromString(s)
	switch {
	case ourErr == nil && theirErr == nil:
		if ours.String() != theirs.String() || ours.Path() != theirs.Path() ||
			ours.TrustDomain().Name() != theirs.TrustDomain().Name() {
			t.Fatalf("%q: ours %q (%q, %q), go-spiffe %q (%q, %q)", s, ours, ours.TrustDomain(), ours.Path(),
				theirs, theirs.TrustDomain(), theirs.Path())
		}
	case ourErr != nil && theirErr == nil:
		if !overLimits(theirs) {
			t.Fatalf("%q: refused (%v), go-spiffe accepts it", s, ourErr)
		}
	case ourErr == nil && theirErr != nil:
		t.Fatalf("%q: accepted, go-spiffe refuses it (%v)", s, theirErr)
	}
}

func overLimits(id spiffeid.ID) bool {
	return len(id.String()) > spiffe.MaxIDLength || len(id.TrustDomain().Name()) > spiffe.MaxTrustDomainLength
}

// compareTrustDomain does the same for ParseTrustDomain and TrustDomainFromString; go-spiffe also
// takes a SPIFFE ID with a path for its trust domain, which sniff refuses.
func compareTrustDomain(t *testing.T, s string) {
	t.Helper()
	ours, ourErr := spiffe.ParseTrustDomain(s)
	theirs, theirErr := spiffeid.TrustDomainFromString(s)
	switch {
	case ourErr == nil && theirErr == nil:
		if ours.Name() != theirs.Name() {
			t.Fatalf("%q: ours %q, go-spiffe %q", s, ours, theirs)
		}
	case ourErr != nil && theirErr == nil:
		id, err := spiffeid.FromString(s)
		withPath := err == nil && id.Path() != ""
		if !withPath && len(theirs.Name()) <= spiffe.MaxTrustDomainLength {
			t.Fatalf("%q: refused (%v), go-spiffe accepts it", s, ourErr)
		}
	case ourErr == nil && theirErr != nil:
		t.Fatalf("%q: accepted, go-spiffe refuses it (%v)", s, theirErr)
	}
}

var corpus = []string{
	"", "spiffe://", "spiffe:/", "spiffe:", "spiffe", "spiffe:///", "spiffe:///x", "spiffe://td",
	"spiffe://td/", "spiffe://td/x", "spiffe://td/x/", "spiffe://td//x", "spiffe://td/x//y",
	"spiffe://td/.", "spiffe://td/..", "spiffe://td/./x", "spiffe://td/x/..", "spiffe://td/.x",
	"spiffe://td/x.", "spiffe://td/...", "spiffe://td/..x", "spiffe://TD/x", "spiffe://Td",
	"SPIFFE://td/x", "Spiffe://td", "spiffe://td:1/x", "spiffe://td:/x", "spiffe://u@td/x",
	"spiffe://u:p@td", "spiffe://td?", "spiffe://td?q", "spiffe://td/x?q", "spiffe://td#",
	"spiffe://td/x#f", "spiffe://td/%41", "spiffe://t%64/x", "spiffe://[::1]/x", "spiffe://1.2.3.4",
	"spiffe://td/a~b", "spiffe://td/a!b", "spiffe://td/a$b", "spiffe://td/a+b", "spiffe://td/a=b",
	"spiffe://td/a;b", "spiffe://td/a,b", "spiffe://t~d", "spiffe://td/é", "spiffe://tdé/x",
	"spiffe://td/a b", "spiffe://td/a\tb", "spiffe://td/a\x00", "spiffe://td/UPPER/lower/09._-",
	"spiffe://a-b_c.d/x", "spiffe://-/x", "spiffe://./x", "spiffe://../x", "spiffe://_/x",
	"https://td/x", "td/x", "//td/x", "spiffe://td\\x", "spiffe://td/x\\y", " spiffe://td",
	"spiffe://td ", "spiffe://td/x\n", "example.org", "spiffe://example.org/ns/default/sa/web",
}

func TestParseIDMatchesGoSpiffe(t *testing.T) {
	for _, s := range corpus {
		compareID(t, s)
		compareTrustDomain(t, s)
		if !strings.HasPrefix(s, "spiffe://") {
			compareTrustDomain(t, strings.TrimPrefix(s, "//"))
		}
	}
	// At the limits, where the two differ by design.
	for _, n := range []int{spiffe.MaxTrustDomainLength - 1, spiffe.MaxTrustDomainLength, spiffe.MaxTrustDomainLength + 1} {
		td := strings.Repeat("t", n)
		compareID(t, "spiffe://"+td+"/x")
		compareTrustDomain(t, td)
		compareTrustDomain(t, "spiffe://"+td)
	}
	for _, n := range []int{spiffe.MaxIDLength - 1, spiffe.MaxIDLength, spiffe.MaxIDLength + 1} {
		s := "spiffe://td/" + strings.Repeat("p", n-len("spiffe://td/"))
		compareID(t, s)
		_, err := spiffe.ParseID(s)
		assert.Equal(t, n > spiffe.MaxIDLength, err != nil, n)
	}
}

// TestParseIDMatchesGoSpiffeRandom compares the parsers on strings built from the characters that
// matter to them, in a fixed pseudo-random sequence.
func TestParseIDMatchesGoSpiffeRandom(t *testing.T) {
	const alphabet = "spiffe:/.-_aZ09%?#@~!é \\"
	pieces := []string{"spiffe://", "/", "//", ".", "..", "td", "TD", ":80", "@", "?", "#", "%2F"}
	n := 200000
	if testing.Short() {
		n = 20000
	}
	r := rand.New(rand.NewPCG(18, 1))
	var b strings.Builder
	for range n {
		b.Reset()
		if r.IntN(4) > 0 {
			b.WriteString("spiffe://")
		}
		for k := r.IntN(12); k > 0; k-- {
			if r.IntN(3) == 0 {
				b.WriteString(pieces[r.IntN(len(pieces))])
			} else {
				b.WriteByte(alphabet[r.IntN(len(alphabet))])
			}
		}
		compareID(t, b.String())
		compareTrustDomain(t, b.String())
	}
}

// FuzzParseIDMatchesGoSpiffe is TestParseIDMatchesGoSpiffe on any input.
func FuzzParseIDMatchesGoSpiffe(f *testing.F) {
	for _, s := range corpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		compareID(t, s)
		compareTrustDomain(t, s)
	})
}

// TestVerifySVIDMatchesGoSpiffe verifies good and bad X.509-SVIDs with both implementations: the
// same ones verify, to the same ID.
func TestVerifySVIDMatchesGoSpiffe(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	other := mtlstest.MustNew("other.org")
	ours := spiffe.NewBundleSet(ca.Bundle(), other.Bundle())
	theirs := x509bundle.NewSet()
	for _, c := range []*mtlstest.CA{ca, other} {
		theirs.Add(x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(c.TrustDomain().Name()),
			c.Bundle().Authorities()))
	}
	inter := ca.Intermediate()
	for name, svid := range map[string]*spiffe.SVID{
		"root-issued":       ca.Issue("/web"),
		"intermediate":      inter.Issue("/ns/default/sa/web"),
		"two intermediates": inter.Intermediate().Issue("/db"),
		"other td":          other.Issue("/web"),
		"wrong td":          ca.Issue("spiffe://other.org/web"),
		"unknown td":        ca.Issue("spiffe://nowhere.org/web"),
		"expired":           ca.Issue("/web", mtlstest.Expired()),
		"not yet valid":     ca.Issue("/web", mtlstest.NotYetValid()),
		"CA leaf":           ca.Issue("/web", mtlstest.AsCA()),
		"two URI SANs":      ca.Issue("/web", mtlstest.WithExtraURI("spiffe://example.org/admin")),
		"no URI SAN":        ca.Issue("/web", mtlstest.WithoutURI(), mtlstest.WithDNSNames("web.example.org")),
		"not SPIFFE URI":    ca.Issue("/web", mtlstest.WithoutURI(), mtlstest.WithExtraURI("https://example.org/web")),
		"bad SPIFFE URI":    ca.Issue("/web", mtlstest.WithoutURI(), mtlstest.WithExtraURI("spiffe://example.org/a//b")),
		"linkerd":           ca.IssueLinkerd("web.default.serviceaccount.identity.linkerd.example.org"),
	} {
		t.Run(name, func(t *testing.T) {
			for _, chain := range [][]*x509.Certificate{svid.Certificates, svid.Certificates[:1]} {
				ourID, _, ourErr := spiffe.VerifySVID(chain, ours, time.Time{})
				theirID, _, theirErr := x509svid.Verify(chain, theirs)
				require.Equal(t, theirErr == nil, ourErr == nil, "ours: %v; go-spiffe: %v", ourErr, theirErr)
				if ourErr == nil {
					assert.Equal(t, theirID.String(), ourID.String())
				}
				ourLeafID, ourErr := spiffe.IDFromCert(chain[0])
				theirLeafID, theirErr := x509svid.IDFromCert(chain[0])
				require.Equal(t, theirErr == nil, ourErr == nil, "IDFromCert: ours: %v; go-spiffe: %v", ourErr, theirErr)
				assert.Equal(t, theirLeafID.String(), ourLeafID.String())
			}
		})
	}
}

// TestParseSVIDMatchesGoSpiffe parses the PEM of X.509-SVIDs with both implementations.
func TestParseSVIDMatchesGoSpiffe(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	for name, svid := range map[string]*spiffe.SVID{
		"good":         ca.Intermediate().Issue("/web"),
		"CA leaf":      ca.Issue("/web", mtlstest.AsCA()),
		"two URI SANs": ca.Issue("/web", mtlstest.WithExtraURI("spiffe://example.org/admin")),
		"no URI SAN":   ca.Issue("/web", mtlstest.WithoutURI()),
	} {
		t.Run(name, func(t *testing.T) {
			certPEM, keyPEM, err := svid.Marshal()
			require.NoError(t, err)
			ours, ourErr := spiffe.ParseSVID(certPEM, keyPEM)
			theirs, theirErr := x509svid.Parse(certPEM, keyPEM)
			require.Equal(t, theirErr == nil, ourErr == nil, "ours: %v; go-spiffe: %v", ourErr, theirErr)
			if ourErr == nil {
				assert.Equal(t, theirs.ID.String(), ours.ID.String())
				assert.Equal(t, len(theirs.Certificates), len(ours.Certificates))
			}
		})
	}
}
