package spiffe_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

// signer is a minimal CA for certificates mtlstest does not make on purpose (key usages).
type signer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newSigner(t *testing.T, parent *signer, tmpl *x509.Certificate) *signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	}
	tmpl.BasicConstraintsValid = true
	issuer, issuerKey := tmpl, key
	if parent != nil {
		issuer, issuerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, issuerKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &signer{cert: cert, key: key}
}

func rootCA(t *testing.T) *signer {
	return newSigner(t, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "root"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	})
}

func leafTmpl(uris ...string) *x509.Certificate {
	tmpl := &x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	return tmpl
}

func TestVerifySVID(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	inter := ca.Intermediate().Intermediate()
	other := mtlstest.MustNew("other.org")
	bundles := spiffe.NewBundleSet(ca.Bundle(), other.Bundle())

	svid := inter.Issue("/ns/default/sa/web")
	id, chains, err := spiffe.VerifySVID(svid.Certificates, bundles, time.Time{})
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/ns/default/sa/web", id.String())
	require.Len(t, chains, 1)
	assert.Len(t, chains[0], 4, "leaf, two intermediates, root")
	assert.True(t, chains[0][3].Equal(ca.Root()))

	// The time: expired later, not yet valid earlier.
	_, _, err = spiffe.VerifySVID(svid.Certificates, bundles, time.Now().Add(2*time.Hour))
	assert.ErrorIs(t, err, spiffe.ErrUntrusted)
	var invalid x509.CertificateInvalidError
	require.ErrorAs(t, err, &invalid)
	assert.Equal(t, x509.Expired, invalid.Reason)
	_, _, err = spiffe.VerifySVID(svid.Certificates, bundles, time.Now().Add(-2*time.Hour))
	assert.ErrorIs(t, err, spiffe.ErrUntrusted)

	// The bundle of the ID's trust domain, not any bundle.
	foreign := ca.Issue("spiffe://other.org/web")
	id, _, err = spiffe.VerifySVID(foreign.Certificates, bundles, time.Time{})
	assert.ErrorIs(t, err, spiffe.ErrUntrusted)
	assert.Equal(t, "spiffe://other.org/web", id.String(), "the ID comes with a chain error")
	var unknown x509.UnknownAuthorityError
	assert.ErrorAs(t, err, &unknown)
	id, _, err = spiffe.VerifySVID(svid.Certificates, other.Bundle(), time.Time{})
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)
	assert.Equal(t, "example.org", id.TrustDomain().Name())
	_, _, err = spiffe.VerifySVID(svid.Certificates, nil, time.Time{})
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)

	// A missing intermediate.
	_, _, err = spiffe.VerifySVID(svid.Certificates[:2], bundles, time.Time{})
	assert.ErrorIs(t, err, spiffe.ErrUntrusted)
}

func TestVerifySVIDRules(t *testing.T) {
	root := rootCA(t)
	bundle := spiffe.NewBundle(spiffe.MustParseTrustDomain("example.org"), root.cert)
	ok := "spiffe://example.org/web"
	leaf := func(tmpl *x509.Certificate) []*x509.Certificate {
		return []*x509.Certificate{newSigner(t, root, tmpl).cert}
	}
	good := leaf(leafTmpl(ok))
	id, _, err := spiffe.VerifySVID(good, bundle, time.Time{})
	require.NoError(t, err)
	assert.Equal(t, ok, id.String())

	withUsage := func(ku x509.KeyUsage) *x509.Certificate {
		tmpl := leafTmpl(ok)
		tmpl.KeyUsage = ku
		return tmpl
	}
	caLeaf := leafTmpl(ok)
	caLeaf.IsCA = true
	notCA := newSigner(t, root, &x509.Certificate{KeyUsage: x509.KeyUsageCertSign})
	noSign := newSigner(t, root, &x509.Certificate{IsCA: true, KeyUsage: x509.KeyUsageDigitalSignature})
	for name, c := range map[string]struct {
		chain []*x509.Certificate
		want  string
	}{
		"no certificates":       {nil, "no certificates"},
		"nil certificate":       {[]*x509.Certificate{good[0], nil}, "nil certificate"},
		"no URI SAN":            {leaf(leafTmpl()), "no URI SAN"},
		"two URI SANs":          {leaf(leafTmpl(ok, "spiffe://example.org/db")), "more than one URI SAN"},
		"not a SPIFFE ID":       {leaf(leafTmpl("https://example.org/web")), "URI SAN"},
		"bad SPIFFE ID":         {leaf(leafTmpl("spiffe://example.org/a/../b")), "dot segment"},
		"CA leaf":               {leaf(caLeaf), "leaf certificate is a CA"},
		"no key usage":          {leaf(withUsage(0)), "digitalSignature"},
		"no digitalSignature":   {leaf(withUsage(x509.KeyUsageKeyEncipherment)), "digitalSignature"},
		"keyCertSign":           {leaf(withUsage(x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign)), "keyCertSign"},
		"cRLSign":               {leaf(withUsage(x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign)), "cRLSign"},
		"intermediate not a CA": {[]*x509.Certificate{newSigner(t, notCA, leafTmpl(ok)).cert, notCA.cert}, "is not a CA"},
		"intermediate lacks keyCertSign": {
			[]*x509.Certificate{newSigner(t, noSign, leafTmpl(ok)).cert, noSign.cert}, "keyCertSign"},
	} {
		t.Run(name, func(t *testing.T) {
			id, chains, err := spiffe.VerifySVID(c.chain, bundle, time.Time{})
			assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
			assert.ErrorContains(t, err, c.want)
			assert.True(t, id.IsZero())
			assert.Nil(t, chains)
		})
	}
	_, err = spiffe.IDFromCert(leaf(leafTmpl("spiffe://Example.org/web"))[0])
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
	assert.ErrorIs(t, err, spiffe.ErrInvalidID)
	assert.ErrorIs(t, err, spiffe.ErrInvalidTrustDomain)
}

func TestParseAndLoadSVID(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	svid := ca.Intermediate().Issue("/web")
	certPEM, keyPEM, err := svid.Marshal()
	require.NoError(t, err)
	got, err := spiffe.ParseSVID(certPEM, keyPEM)
	require.NoError(t, err)
	assert.Equal(t, svid.ID, got.ID)
	require.Len(t, got.Certificates, 2)
	for i := range got.Certificates {
		assert.True(t, got.Certificates[i].Equal(svid.Certificates[i]))
	}
	assert.True(t, svid.PrivateKey.Public().(*ecdsa.PublicKey).Equal(got.PrivateKey.Public()))

	dir := t.TempDir()
	files, err := mtlstest.WritePEM(dir, "web", svid, ca.Bundle())
	require.NoError(t, err)
	loaded, err := spiffe.LoadSVID(files.Cert, files.Key)
	require.NoError(t, err)
	assert.Equal(t, svid.ID, loaded.ID)
	b, err := spiffe.LoadBundle(ca.TrustDomain(), files.Bundle)
	require.NoError(t, err)
	assert.Equal(t, ca.TrustDomain(), b.TrustDomain())
	require.Len(t, b.Authorities(), 1)
	assert.True(t, b.Authorities()[0].Equal(ca.Root()))
	_, _, err = spiffe.VerifySVID(loaded.Certificates, b, time.Time{})
	require.NoError(t, err)

	// Refusals.
	other := ca.Issue("/other")
	_, otherKey, err := other.Marshal()
	require.NoError(t, err)
	_, err = spiffe.ParseSVID(certPEM, otherKey)
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
	assert.ErrorContains(t, err, "does not match")
	_, err = spiffe.ParseSVID(certPEM[:len(certPEM)/2], keyPEM)
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
	_, err = spiffe.ParseSVID(certPEM, nil)
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
	_, err = spiffe.ParseSVID(nil, keyPEM)
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
	bad := ca.Issue("/x", mtlstest.AsCA())
	badCert, badKey, err := bad.Marshal()
	require.NoError(t, err)
	_, err = spiffe.ParseSVID(badCert, badKey)
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
	_, err = spiffe.LoadSVID(filepath.Join(dir, "missing.crt"), files.Key)
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	_, err = spiffe.LoadSVID(files.Cert, filepath.Join(dir, "missing.key"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	_, _, err = (&spiffe.SVID{}).Marshal()
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
	_, _, err = (&spiffe.SVID{Certificates: svid.Certificates}).Marshal()
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
}

func TestBundles(t *testing.T) {
	a, b := mtlstest.MustNew("a.test"), mtlstest.MustNew("b.test")
	ba, bb := a.Bundle(), b.Bundle()
	assert.Len(t, spiffe.NewBundle(a.TrustDomain(), nil, a.Root(), nil).Authorities(), 1)

	// A bundle is immutable: Authorities returns a copy.
	auth := ba.Authorities()
	auth[0] = nil
	assert.NotNil(t, ba.Authorities()[0])

	got, err := ba.BundleFor(a.TrustDomain())
	require.NoError(t, err)
	assert.Same(t, ba, got)
	_, err = ba.BundleFor(b.TrustDomain())
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)
	assert.ErrorContains(t, err, `"b.test"`)
	_, err = (*spiffe.Bundle)(nil).BundleFor(a.TrustDomain())
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)

	newer := spiffe.NewBundle(a.TrustDomain(), a.Root(), b.Root())
	set := spiffe.NewBundleSet(ba, nil, bb, newer)
	got, ok := set.Get(a.TrustDomain())
	assert.True(t, ok)
	assert.Same(t, newer, got, "the later bundle of a trust domain wins")
	got, err = set.BundleFor(b.TrustDomain())
	require.NoError(t, err)
	assert.Same(t, bb, got)
	_, err = set.BundleFor(spiffe.MustParseTrustDomain("c.test"))
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)
	_, ok = (*spiffe.BundleSet)(nil).Get(a.TrustDomain())
	assert.False(t, ok)
	_, err = (*spiffe.BundleSet)(nil).BundleFor(a.TrustDomain())
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)

	// PEM round trip, and refusals.
	data, err := newer.Marshal()
	require.NoError(t, err)
	parsed, err := spiffe.ParseBundle(a.TrustDomain(), data)
	require.NoError(t, err)
	assert.Len(t, parsed.Authorities(), 2)
	for _, bad := range [][]byte{nil, []byte("junk"), data[:len(data)-20]} {
		_, err := spiffe.ParseBundle(a.TrustDomain(), bad)
		assert.ErrorIs(t, err, spiffe.ErrInvalidBundle)
	}
	path := filepath.Join(t.TempDir(), "bundle.pem")
	require.NoError(t, os.WriteFile(path, []byte("junk"), 0o600))
	_, err = spiffe.LoadBundle(a.TrustDomain(), path)
	assert.ErrorIs(t, err, spiffe.ErrInvalidBundle)
	assert.ErrorContains(t, err, "bundle.pem")
	_, err = spiffe.LoadBundle(a.TrustDomain(), path+".missing")
	assert.ErrorIs(t, err, spiffe.ErrInvalidBundle)
	assert.True(t, errors.Is(err, fs.ErrNotExist))
}
