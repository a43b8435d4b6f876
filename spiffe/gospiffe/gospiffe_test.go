package gospiffe_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
	"github.com/sniffsplice/sniff/spiffe/gospiffe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// theirs converts an SVID of mtlstest to go-spiffe's type, as a Workload API client would hand it
// out.
func theirs(t *testing.T, s *spiffe.SVID) *x509svid.SVID {
	t.Helper()
	return &x509svid.SVID{
		ID: spiffeid.RequireFromString(s.ID.String()), Certificates: s.Certificates, PrivateKey: s.PrivateKey,
	}
}

func theirBundle(ca *mtlstest.CA) *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(ca.TrustDomain().Name()),
		ca.Bundle().Authorities())
}

func TestIDAndTrustDomain(t *testing.T) {
	id, err := gospiffe.ID(spiffeid.RequireFromString("spiffe://example.org/ns/default/sa/web"))
	require.NoError(t, err)
	assert.Equal(t, spiffe.MustParseID("spiffe://example.org/ns/default/sa/web"), id)
	id, err = gospiffe.ID(spiffeid.ID{})
	require.NoError(t, err)
	assert.True(t, id.IsZero())

	td, err := gospiffe.TrustDomain(spiffeid.RequireTrustDomainFromString("example.org"))
	require.NoError(t, err)
	assert.Equal(t, spiffe.MustParseTrustDomain("example.org"), td)
	td, err = gospiffe.TrustDomain(spiffeid.TrustDomain{})
	require.NoError(t, err)
	assert.True(t, td.IsZero())

	// go-spiffe does not enforce the specification's length limits; package spiffe does.
	long := spiffeid.RequireFromString("spiffe://example.org/" + strings.Repeat("a", spiffe.MaxIDLength))
	_, err = gospiffe.ID(long)
	assert.ErrorIs(t, err, spiffe.ErrInvalidID)
	longTD := spiffeid.RequireTrustDomainFromString(strings.Repeat("t", spiffe.MaxTrustDomainLength+1))
	_, err = gospiffe.TrustDomain(longTD)
	assert.ErrorIs(t, err, spiffe.ErrInvalidTrustDomain)
	_, err = gospiffe.Bundle(x509bundle.New(longTD))
	assert.ErrorIs(t, err, spiffe.ErrInvalidTrustDomain)
	_, err = gospiffe.SVID(&x509svid.SVID{ID: long})
	assert.ErrorIs(t, err, spiffe.ErrInvalidID)
	_, err = gospiffe.SVID(nil)
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
	_, err = gospiffe.Bundle(nil)
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)
}

// svidSource is a go-spiffe x509svid.Source whose SVID the test replaces.
type svidSource struct {
	mu   sync.Mutex
	svid *x509svid.SVID
	err  error
}

func (s *svidSource) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svid, s.err
}

func (s *svidSource) set(svid *x509svid.SVID, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.svid, s.err = svid, err
}

func TestSVIDSource(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	first := ca.Intermediate().Issue("/web")
	src := &svidSource{svid: theirs(t, first)}
	adapted := gospiffe.SVIDSource(src)

	got, err := adapted.SVID()
	require.NoError(t, err)
	assert.Equal(t, first.ID, got.ID)
	assert.Equal(t, first.Certificates, got.Certificates)
	assert.Equal(t, first.PrivateKey, got.PrivateKey)
	again, err := adapted.SVID()
	require.NoError(t, err)
	assert.Same(t, got, again, "the same go-spiffe SVID converts once")

	rotated := ca.Issue("/web")
	src.set(theirs(t, rotated), nil)
	got, err = adapted.SVID()
	require.NoError(t, err)
	assert.NotSame(t, again, got)
	assert.Equal(t, rotated.Certificates, got.Certificates)

	boom := errors.New("agent gone")
	src.set(nil, boom)
	_, err = adapted.SVID()
	assert.ErrorIs(t, err, boom)
	src.set(nil, nil)
	_, err = adapted.SVID()
	assert.ErrorIs(t, err, spiffe.ErrInvalidSVID)
}

// bundleSource is a go-spiffe x509bundle.Source that may lie about the trust domain.
type bundleSource struct{ b *x509bundle.Bundle }

func (s bundleSource) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.b, nil
}

func TestBundleSource(t *testing.T) {
	a, b := mtlstest.MustNew("a.test"), mtlstest.MustNew("b.test")
	set := x509bundle.NewSet(theirBundle(a), theirBundle(b))
	adapted := gospiffe.BundleSource(set)

	got, err := adapted.BundleFor(a.TrustDomain())
	require.NoError(t, err)
	assert.Equal(t, a.TrustDomain(), got.TrustDomain())
	assert.Equal(t, a.Bundle().Authorities(), got.Authorities())
	again, err := adapted.BundleFor(a.TrustDomain())
	require.NoError(t, err)
	assert.Same(t, got, again, "the same go-spiffe bundle converts once")
	got, err = adapted.BundleFor(b.TrustDomain())
	require.NoError(t, err)
	assert.Equal(t, b.TrustDomain(), got.TrustDomain())

	// A new bundle of the trust domain replaces the conversion.
	rotated := mtlstest.MustNew("a.test")
	set.Add(theirBundle(rotated))
	got, err = adapted.BundleFor(a.TrustDomain())
	require.NoError(t, err)
	assert.Equal(t, rotated.Bundle().Authorities(), got.Authorities())

	_, err = adapted.BundleFor(spiffe.MustParseTrustDomain("c.test"))
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)
	assert.ErrorContains(t, err, "c.test")
	_, err = adapted.BundleFor(spiffe.TrustDomain{})
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)

	// A source that answers with another trust domain's bundle is refused.
	_, err = gospiffe.BundleSource(bundleSource{theirBundle(b)}).BundleFor(a.TrustDomain())
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)
	_, err = gospiffe.BundleSource(bundleSource{nil}).BundleFor(a.TrustDomain())
	assert.ErrorIs(t, err, spiffe.ErrNoBundle)
}

// TestHandshake runs mutual TLS between two workloads whose SVIDs and bundles come from go-spiffe
// sources, as from a SPIRE agent.
func TestHandshake(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	bundles := x509bundle.NewSet(theirBundle(ca))
	server := &svidSource{svid: theirs(t, ca.Issue("/server"))}
	client := &svidSource{svid: theirs(t, ca.Issue("/client"))}

	srvCfg := &mtls.Config{SVID: gospiffe.SVIDSource(server), Bundle: gospiffe.BundleSource(bundles),
		Authorize: mtls.AuthorizeID(ca.ID("/client"))}
	cliCfg := &mtls.Config{SVID: gospiffe.SVIDSource(client), Bundle: gospiffe.BundleSource(bundles),
		Authorize: mtls.AuthorizeID(ca.ID("/server"))}
	srvTLS, err := srvCfg.ServerTLS()
	require.NoError(t, err)
	cliTLS, err := cliCfg.ClientTLS()
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var wg sync.WaitGroup
	var srvPeer spiffe.ID
	var srvErr error
	wg.Go(func() {
		c := tls.Server(a, srvTLS)
		srvPeer, srvErr = mtls.Handshake(ctx, c)
		if srvErr == nil {
			_, srvErr = c.Write([]byte("x")) // completes the client's view of the session
		}
	})
	c := tls.Client(b, cliTLS)
	cliPeer, err := mtls.Handshake(ctx, c)
	require.NoError(t, err)
	buf := make([]byte, 1)
	_, err = c.Read(buf)
	require.NoError(t, err)
	wg.Wait()
	require.NoError(t, srvErr)
	assert.Equal(t, ca.ID("/server"), cliPeer)
	assert.Equal(t, ca.ID("/client"), srvPeer)
}
