package spiffe_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/spiffe"
)

// sourceFunc is a BundleSource from a function.
type sourceFunc func(spiffe.TrustDomain) (*spiffe.Bundle, error)

func (f sourceFunc) BundleFor(td spiffe.TrustDomain) (*spiffe.Bundle, error) { return f(td) }

// TestLimitsVerifySVIDBundleSource: a source that has no bundle, whether it says so with an error,
// with nil and no error, or with an error beside a bundle, gives ErrNoBundle with the ID and the
// source's error; the bundle it is asked for is that of the ID's trust domain.
func TestLimitsVerifySVIDBundleSource(t *testing.T) {
	root := rootCA(t)
	tdom := spiffe.MustParseTrustDomain("example.org")
	bundle := spiffe.NewBundle(tdom, root.cert)
	chain := []*x509.Certificate{newSigner(t, root, leafTmpl("spiffe://example.org/web")).cert}
	errSource := errors.New("source failed")
	for name, c := range map[string]struct {
		b   *spiffe.Bundle
		err error
	}{
		"error":               {nil, errSource},
		"nil and no error":    {nil, nil},
		"bundle beside error": {bundle, errSource},
	} {
		t.Run(name, func(t *testing.T) {
			var asked []spiffe.TrustDomain
			src := sourceFunc(func(td spiffe.TrustDomain) (*spiffe.Bundle, error) {
				asked = append(asked, td)
				return c.b, c.err
			})
			id, chains, err := spiffe.VerifySVID(chain, src, time.Time{})
			assert.ErrorIs(t, err, spiffe.ErrNoBundle)
			assert.NotErrorIs(t, err, spiffe.ErrUntrusted)
			assert.Equal(t, c.err != nil, errors.Is(err, errSource), err)
			assert.ErrorContains(t, err, `"example.org"`)
			assert.Equal(t, "spiffe://example.org/web", id.String())
			assert.Nil(t, chains)
			assert.Equal(t, []spiffe.TrustDomain{tdom}, asked)
		})
	}
	id, chains, err := spiffe.VerifySVID(chain, sourceFunc(func(spiffe.TrustDomain) (*spiffe.Bundle, error) {
		return bundle, nil
	}), time.Time{})
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/web", id.String())
	require.Len(t, chains, 1)
	require.Len(t, chains[0], 2)
	assert.True(t, chains[0][0].Equal(chain[0]))
	assert.True(t, chains[0][1].Equal(root.cert))
}

// TestLimitsVerifySVIDLeafRules: the leaf's key usages one bit at a time around the X.509-SVID
// rules (digitalSignature required; keyCertSign and cRLSign refused; the others allowed), and a
// leaf that is a CA with and without the usages of one.
func TestLimitsVerifySVIDLeafRules(t *testing.T) {
	root := rootCA(t)
	bundle := spiffe.NewBundle(spiffe.MustParseTrustDomain("example.org"), root.cert)
	ok := "spiffe://example.org/web"
	others := []x509.KeyUsage{x509.KeyUsageContentCommitment, x509.KeyUsageKeyEncipherment,
		x509.KeyUsageDataEncipherment, x509.KeyUsageKeyAgreement}
	type leafCase struct {
		ku   x509.KeyUsage
		ca   bool
		want string // "" accepted
	}
	cases := []leafCase{
		{x509.KeyUsageDigitalSignature, false, ""},
		{x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement |
			x509.KeyUsageContentCommitment | x509.KeyUsageDataEncipherment, false, ""},
		{x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, false, "leaf certificate has the keyCertSign key usage"},
		{x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign, false, "leaf certificate has the cRLSign key usage"},
		{x509.KeyUsageCertSign, false, "lacks the digitalSignature key usage"},
		{x509.KeyUsageCRLSign, false, "lacks the digitalSignature key usage"},
		{x509.KeyUsageDigitalSignature, true, "leaf certificate is a CA"},
		{x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, true, "leaf certificate is a CA"},
	}
	for _, o := range others {
		cases = append(cases, leafCase{o, false, "lacks the digitalSignature key usage"},
			leafCase{o | x509.KeyUsageDigitalSignature, false, ""})
	}
	for _, c := range cases {
		tmpl := leafTmpl(ok)
		tmpl.KeyUsage, tmpl.IsCA = c.ku, c.ca
		chain := []*x509.Certificate{newSigner(t, root, tmpl).cert}
		id, chains, err := spiffe.VerifySVID(chain, bundle, time.Time{})
		if c.want == "" {
			require.NoError(t, err, "%b", c.ku)
			assert.Equal(t, ok, id.String())
			assert.Len(t, chains, 1)
			continue
		}
		assert.ErrorIs(t, err, spiffe.ErrInvalidSVID, "%b %v", c.ku, c.ca)
		assert.ErrorContains(t, err, c.want, "%b %v", c.ku, c.ca)
		assert.True(t, id.IsZero())
		assert.Nil(t, chains)
	}
}

// TestLimitsVerifySVIDSigningRules: each signing certificate of the chain is a CA with keyCertSign;
// the error names the first one at fault by its position (1 for the first after the leaf), and
// keyCertSign beside other usages, or alone, is enough.
func TestLimitsVerifySVIDSigningRules(t *testing.T) {
	root := rootCA(t)
	bundle := spiffe.NewBundle(spiffe.MustParseTrustDomain("example.org"), root.cert)
	ca := func(parent *signer, isCA bool, ku x509.KeyUsage) *signer {
		return newSigner(t, parent, &x509.Certificate{Subject: pkix.Name{CommonName: "inter"}, IsCA: isCA, KeyUsage: ku})
	}
	good := ca(root, true, x509.KeyUsageCertSign)
	goodToo := ca(good, true, x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature)
	leaf := newSigner(t, goodToo, leafTmpl("spiffe://example.org/web"))
	id, chains, err := spiffe.VerifySVID([]*x509.Certificate{leaf.cert, goodToo.cert, good.cert}, bundle, time.Time{})
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/web", id.String())
	require.Len(t, chains, 1)
	assert.Len(t, chains[0], 4)

	for _, bad := range []struct {
		isCA bool
		ku   x509.KeyUsage
		want string
	}{
		{false, x509.KeyUsageCertSign, "is not a CA"},
		{true, x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, "lacks the keyCertSign key usage"},
		{true, 0, "lacks the keyCertSign key usage"},
	} {
		// The bad one first after the leaf, then second.
		b1 := ca(root, bad.isCA, bad.ku)
		chain1 := []*x509.Certificate{newSigner(t, b1, leafTmpl("spiffe://example.org/web")).cert, b1.cert}
		b2 := ca(root, bad.isCA, bad.ku)
		mid := ca(b2, true, x509.KeyUsageCertSign)
		chain2 := []*x509.Certificate{newSigner(t, mid, leafTmpl("spiffe://example.org/web")).cert, mid.cert, b2.cert}
		_, _, err := spiffe.VerifySVID(chain1, bundle, time.Time{})
		assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
		assert.ErrorContains(t, err, "signing certificate 1 "+bad.want)
		_, _, err = spiffe.VerifySVID(chain2, bundle, time.Time{})
		assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
		assert.ErrorContains(t, err, "signing certificate 2 "+bad.want)
	}
}
