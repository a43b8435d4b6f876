package mtls_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

// onePrefix checks the message convention: one line, "mtls: " exactly once, at the start.
func onePrefix(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	msg := err.Error()
	assert.NotContains(t, msg, "\n", msg)
	assert.True(t, strings.HasPrefix(msg, "mtls: "), msg)
	assert.Equal(t, 1, strings.Count(msg, "mtls: "), msg)
}

// TestErrorsOnePrefix: errors of this package that wrap others of it print one prefix and still
// match both with errors.Is.
func TestErrorsOnePrefix(t *testing.T) {
	re := &mtls.ReloadError{Path: "/run/tls.key", Err: mtls.ErrKeyMismatch}
	onePrefix(t, re)
	assert.Equal(t, "mtls: new certificate files refused, keeping the previous ones: /run/tls.key: "+
		"private key does not match the certificate", re.Error())
	assert.ErrorIs(t, re, mtls.ErrKeyMismatch)

	ve := &mtls.VerifyError{Reason: mtls.ReasonBadCertificate, Err: fmt.Errorf("%w: %q", mtls.ErrNotLinkerdIdentity, "x")}
	onePrefix(t, ve)
	assert.ErrorIs(t, ve, mtls.ErrBadCertificate)
	assert.ErrorIs(t, ve, mtls.ErrNotLinkerdIdentity)

	// A cause from package spiffe loses its prefix too.
	_, err := spiffe.IDFromCert(mtlstest.MustNew("example.org").Issue("/x", mtlstest.WithoutURI()).Certificates[0])
	ve = &mtls.VerifyError{Reason: mtls.ReasonBadCertificate, Err: err}
	onePrefix(t, ve)
	assert.NotContains(t, ve.Error(), "spiffe: ")
	assert.Equal(t, "mtls: peer refused (bad_certificate): invalid X.509-SVID: certificate has no URI SAN", ve.Error())
	assert.ErrorIs(t, ve, spiffe.ErrInvalidSVID)

	// The sources' "no bundle" matches spiffe.ErrNoBundle, as spiffe.BundleSource says.
	_, err = mtls.NewStaticSource(nil).BundleFor(spiffe.MustParseTrustDomain("example.org"))
	onePrefix(t, err)
	assert.Equal(t, `mtls: no bundle for trust domain "example.org"`, err.Error())
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)
}

// TestNoSVIDOnePrefix: a client whose source holds no SVID fails its handshake (it cannot learn its
// own trust domain to authorize the server) with ErrNoSVID wrapping the source's ErrSourceEmpty,
// printed under one prefix.
func TestNoSVIDOnePrefix(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	server := mtls.Config{SVID: ca.Source("/server"), Bundle: ca.Source("/server")}
	empty := mtls.NewStaticSource(nil, ca.Bundle())
	client := mtls.Config{SVID: empty, Bundle: empty}
	st, err := server.ServerTLS()
	require.NoError(t, err)
	ct, err := client.ClientTLS()
	require.NoError(t, err)

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { _ = tls.Server(b, st).HandshakeContext(ctx); b.Close() }()
	err = tls.Client(a, ct).HandshakeContext(ctx)
	onePrefix(t, err)
	assert.Contains(t, err.Error(), ": no usable SVID: source holds no SVID")
	assert.ErrorIs(t, err, mtls.ErrNoSVID)
	assert.ErrorIs(t, err, mtls.ErrSourceEmpty)
}
