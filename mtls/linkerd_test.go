package mtls_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

func TestLinkerdDNSIdentities(t *testing.T) {
	ca := mtlstest.MustNew("cluster.local")
	srvSrc := mtls.NewStaticSource(ca.IssueLinkerd("db.prod.serviceaccount.identity.linkerd.cluster.local"), ca.Bundle())
	cliSrc := mtls.NewStaticSource(ca.IssueLinkerd("web.prod.serviceaccount.identity.linkerd.cluster.local"), ca.Bundle())
	web := spiffe.MustParseID("spiffe://cluster.local/ns/prod/sa/web")
	db := spiffe.MustParseID("spiffe://cluster.local/ns/prod/sa/db")

	srv := mustServer(t, &mtls.Config{SVID: srvSrc, Bundle: srvSrc, Identity: mtls.IdentityLinkerdDNS, Authorize: mtls.AuthorizeID(web)})
	o := exchange(t, srv, tlsClient(mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc, Identity: mtls.IdentityLinkerdDNS, Authorize: mtls.AuthorizeID(db)})))
	require.NoError(t, o.srvErr)
	require.NoError(t, o.cliReadErr)
	assert.Equal(t, web, o.srvID)
	assert.Equal(t, db, o.cliID)

	// The default authorizer (own trust domain) works from the DNS name too.
	srvDefault := mustServer(t, &mtls.Config{SVID: srvSrc, Bundle: srvSrc, Identity: mtls.IdentityLinkerdDNS})
	o = exchange(t, srvDefault, tlsClient(mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc, Identity: mtls.IdentityLinkerdDNS})))
	require.NoError(t, o.srvErr)

	// Refused: another service account.
	other := mtls.NewStaticSource(ca.IssueLinkerd("batch.prod.serviceaccount.identity.linkerd.cluster.local"), ca.Bundle())
	o = exchange(t, srv, tlsClient(mustClient(t, &mtls.Config{SVID: other, Bundle: other, Identity: mtls.IdentityLinkerdDNS})))
	assert.ErrorIs(t, o.srvErr, mtls.ErrUnauthorized)

	// A SPIFFE certificate is judged by its URI SAN in this mode too; the
	// SPIFFE form of web's Linkerd name is the same ID.
	spiffeOnly := mtls.NewStaticSource(ca.Issue("/ns/prod/sa/web"), ca.Bundle())
	o = exchange(t, srv, tlsClient(mustClient(t, &mtls.Config{SVID: spiffeOnly, Bundle: spiffeOnly, Identity: mtls.IdentityLinkerdDNS, Authorize: mtls.AuthorizeAny()})))
	require.NoError(t, o.srvErr)
	assert.Equal(t, web, o.srvID)

	// Refused: a certificate with a URI SAN and a Linkerd DNS SAN is judged
	// by the URI, here another workload.
	both := mtls.NewStaticSource(ca.Issue("/ns/prod/sa/batch", mtlstest.WithDNSNames("web.prod.serviceaccount.identity.linkerd.cluster.local")), ca.Bundle())
	o = exchange(t, srv, tlsClient(mustClient(t, &mtls.Config{SVID: both, Bundle: both, Identity: mtls.IdentityLinkerdDNS, Authorize: mtls.AuthorizeAny()})))
	assert.ErrorIs(t, o.srvErr, mtls.ErrUnauthorized)

	// Refused: the DNS-only certificate in the default SPIFFE mode.
	srvSPIFFE := mustServer(t, &mtls.Config{SVID: spiffeOnly, Bundle: spiffeOnly})
	o = exchange(t, srvSPIFFE, tlsClient(mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc, Authorize: mtls.AuthorizeAny()})))
	assert.ErrorIs(t, o.srvErr, mtls.ErrBadCertificate, "client: %v", o.cliErr)

	// Refused: two Linkerd identities in one certificate.
	two := mtls.NewStaticSource(ca.IssueLinkerd("web.prod.serviceaccount.identity.linkerd.cluster.local",
		mtlstest.WithDNSNames("db.prod.serviceaccount.identity.linkerd.cluster.local")), ca.Bundle())
	o = exchange(t, srv, tlsClient(mustClient(t, &mtls.Config{SVID: two, Bundle: two, Identity: mtls.IdentityLinkerdDNS, Authorize: mtls.AuthorizeAny()})))
	assert.ErrorIs(t, o.srvErr, mtls.ErrBadCertificate)
}

func TestParseLinkerdDNS(t *testing.T) {
	for name, want := range map[string]string{
		"web.default.serviceaccount.identity.linkerd.cluster.local":  "spiffe://cluster.local/ns/default/sa/web",
		"web.default.serviceaccount.identity.linkerd.cluster.local.": "spiffe://cluster.local/ns/default/sa/web",
		"a-b.ns-1.serviceaccount.identity.linkerd.example.com":       "spiffe://example.com/ns/ns-1/sa/a-b",
	} {
		id, err := mtls.ParseLinkerdDNS(name)
		require.NoError(t, err, name)
		assert.Equal(t, want, id.String())
		back, err := mtls.LinkerdDNS(id)
		require.NoError(t, err)
		assert.Equal(t, name[:len(name)-len(".")*boolInt(name[len(name)-1] == '.')], back)
	}
	for _, bad := range []string{
		"", "web.default.svc.cluster.local", "default.serviceaccount.identity.linkerd.cluster.local",
		"a.b.c.serviceaccount.identity.linkerd.cluster.local", "web.default.serviceaccount.identity.linkerd.",
		"web.default.serviceaccount.identity.linkerd.UPPER.case",
	} {
		_, err := mtls.ParseLinkerdDNS(bad)
		assert.ErrorIs(t, err, mtls.ErrNotLinkerdIdentity, bad)
	}
	for _, bad := range []string{"spiffe://td/ns/a", "spiffe://td/ns/a/sa/b/c", "spiffe://td/x/a/sa/b", "spiffe://td/ns/a.b/sa/c"} {
		_, err := mtls.LinkerdDNS(spiffe.MustParseID(bad))
		assert.ErrorIs(t, err, mtls.ErrNotLinkerdIdentity, bad)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
