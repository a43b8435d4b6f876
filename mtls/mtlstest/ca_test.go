package mtlstest_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

func TestIssueValidSVID(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	svid := ca.Issue("/ns/a/sa/b", mtlstest.WithLifetime(10*time.Minute))
	assert.Equal(t, "spiffe://example.org/ns/a/sa/b", svid.ID.String())
	leaf := svid.Certificates[0]
	assert.WithinDuration(t, time.Now().Add(10*time.Minute), leaf.NotAfter, 2*time.Minute)
	assert.False(t, leaf.IsCA)

	// Package spiffe's parser and verifier accept it.
	certPEM, keyPEM, err := svid.Marshal()
	require.NoError(t, err)
	parsed, err := spiffe.ParseSVID(certPEM, keyPEM)
	require.NoError(t, err)
	assert.Equal(t, svid.ID, parsed.ID)
	id, chains, err := spiffe.VerifySVID(svid.Certificates, ca.Bundle(), time.Time{})
	require.NoError(t, err)
	assert.Equal(t, svid.ID, id)
	assert.Len(t, chains[0], 2)
}

func TestIntermediateChain(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	i2 := ca.Intermediate().Intermediate()
	svid := i2.Issue("/deep")
	require.Len(t, svid.Certificates, 3)
	assert.Equal(t, ca.Root(), i2.Root())
	_, chains, err := spiffe.VerifySVID(svid.Certificates, i2.Bundle(), time.Time{})
	require.NoError(t, err)
	assert.Len(t, chains[0], 4)
	// Without the intermediates the leaf does not verify.
	_, _, err = spiffe.VerifySVID(svid.Certificates[:1], ca.Bundle(), time.Time{})
	var unknown x509.UnknownAuthorityError
	assert.ErrorAs(t, err, &unknown)
}

func TestBadCertificates(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	other := mtlstest.MustNew("other.org")
	set := spiffe.NewBundleSet(ca.Bundle(), other.Bundle())
	// The sentinel errors of package spiffe, and the x509 causes by type.
	expired := func(t *testing.T, err error) {
		assert.ErrorIs(t, err, spiffe.ErrUntrusted)
		var invalid x509.CertificateInvalidError
		if assert.ErrorAs(t, err, &invalid) {
			assert.Equal(t, x509.Expired, invalid.Reason)
		}
	}
	text := func(want string) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
			assert.ErrorContains(t, err, want)
		}
	}
	for name, c := range map[string]struct {
		svid  *spiffe.SVID
		check func(*testing.T, error)
	}{
		"expired":       {ca.Issue("/x", mtlstest.Expired()), expired},
		"not yet valid": {ca.Issue("/x", mtlstest.NotYetValid()), expired},
		"wrong td": {ca.Issue("spiffe://other.org/x"), func(t *testing.T, err error) {
			assert.ErrorIs(t, err, spiffe.ErrUntrusted)
			var unknown x509.UnknownAuthorityError
			assert.ErrorAs(t, err, &unknown)
		}},
		"two URIs": {ca.Issue("/x", mtlstest.WithExtraURI("spiffe://example.org/y")), text("more than one URI SAN")},
		"CA leaf":  {ca.Issue("/x", mtlstest.AsCA()), text("leaf certificate is a CA")},
		"no URI":   {ca.Issue("/x", mtlstest.WithoutURI()), text("no URI SAN")},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := spiffe.VerifySVID(c.svid.Certificates, set, time.Time{})
			c.check(t, err)
		})
	}
	nb, na := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	s := ca.Issue("/x", mtlstest.WithValidity(nb, na))
	assert.True(t, s.Certificates[0].NotBefore.Equal(nb.Truncate(time.Second)))
	assert.True(t, s.Certificates[0].NotAfter.Equal(na.Truncate(time.Second)))
	_, err := ca.TryIssue("not a path")
	assert.ErrorIs(t, err, spiffe.ErrInvalidID)
	assert.ErrorContains(t, err, "path does not start with '/'")
	assert.Panics(t, func() { ca.Issue("not a path") })
	assert.Panics(t, func() { mtlstest.MustNew("Not A Domain!") })
}

func TestLinkerdCertificate(t *testing.T) {
	ca := mtlstest.MustNew("cluster.local")
	svid := ca.IssueLinkerd("web.default.serviceaccount.identity.linkerd.cluster.local")
	assert.Equal(t, "spiffe://cluster.local/ns/default/sa/web", svid.ID.String())
	assert.Empty(t, svid.Certificates[0].URIs)
	assert.Equal(t, []string{"web.default.serviceaccount.identity.linkerd.cluster.local"}, svid.Certificates[0].DNSNames)
}

func TestWritePEM(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	svid := ca.Intermediate().Issue("/web")
	dir := t.TempDir()
	f, err := mtlstest.WritePEM(dir, "web", svid, ca.Bundle())
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "web.crt"), f.Cert)
	loaded, err := spiffe.LoadSVID(f.Cert, f.Key)
	require.NoError(t, err)
	assert.Equal(t, svid.ID, loaded.ID)
	assert.Len(t, loaded.Certificates, 2)
	b, err := spiffe.LoadBundle(ca.TrustDomain(), f.Bundle)
	require.NoError(t, err)
	assert.Equal(t, ca.Bundle().Authorities(), b.Authorities())
	raw, err := os.ReadFile(f.Bundle)
	require.NoError(t, err)
	assert.Equal(t, ca.BundlePEM(), raw)
	pool := x509.NewCertPool()
	assert.True(t, pool.AppendCertsFromPEM(raw))
}

func TestSourceRotates(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	other := mtlstest.MustNew("other.org")
	src := ca.Source("/a", other)
	s1, err := src.SVID()
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/a", s1.ID.String())
	_, err = src.BundleFor(other.TrustDomain())
	require.NoError(t, err)
	src.SetSVID(ca.Issue("/b"))
	s2, err := src.SVID()
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/b", s2.ID.String())
}
