package mtls_test

// The verification and authorization decisions at their limits, called
// straight through the configurations' VerifyConnection (no network): a
// certificate one second before, at, and one second after each end of its
// validity window, chains with and without their intermediate, leaves that
// are CAs or carry no identity, unknown and foreign trust domains, prefixes
// one segment and one byte apart. A flipped condition here lets the wrong
// peer in or keeps the right one out. scripts/mutate runs these
// (TestLimits*) for each planted bug.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

// verifyBoth runs the server's and the client's VerifyConnection on a peer
// chain and returns the reason each gave (they must agree).
func verifyBoth(t *testing.T, cfg mtls.Config, chain []*x509.Certificate) mtls.Reason {
	t.Helper()
	srv, err := cfg.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := cfg.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	cs := tls.ConnectionState{HandshakeComplete: true, Version: tls.VersionTLS13, PeerCertificates: chain}
	es, ec := srv.VerifyConnection(cs), cli.VerifyConnection(cs)
	rs, rc := mtls.Classify(es), mtls.Classify(ec)
	if rs != rc {
		t.Fatalf("server %v (%v), client %v (%v)", rs, es, rc, ec)
	}
	if es != nil {
		var ve *mtls.VerifyError
		if !errors.As(es, &ve) || ve.Reason != rs || strings.ContainsRune(es.Error(), '\n') {
			t.Fatalf("%v: not a one-line *VerifyError with its reason", es)
		}
	}
	return rs
}

func TestLimitsVerify(t *testing.T) {
	defer boundTime(t)()
	ca := mtlstest.MustNew("limits.test")
	other := mtlstest.MustNew("other.test")
	local := ca.Source("/me")
	cfg := func(now time.Time, a mtls.Authorizer) mtls.Config {
		return mtls.Config{SVID: local, Bundle: local, Authorize: a, Time: func() time.Time { return now }}
	}
	// Certificates carry whole seconds.
	nb := time.Now().Truncate(time.Second).Add(-time.Hour)
	na := nb.Add(2 * time.Hour)
	peer := ca.Issue("/peer", mtlstest.WithValidity(nb, na))
	for _, tc := range []struct {
		now  time.Time
		want mtls.Reason
	}{
		{nb.Add(-time.Second), mtls.ReasonNotYetValid},
		{nb.Add(-time.Nanosecond), mtls.ReasonNotYetValid},
		{nb, mtls.ReasonOK},
		{nb.Add(time.Second), mtls.ReasonOK},
		{na.Add(-time.Second), mtls.ReasonOK},
		{na, mtls.ReasonOK},
		{na.Add(time.Nanosecond), mtls.ReasonExpired},
		{na.Add(time.Second), mtls.ReasonExpired},
	} {
		if got := verifyBoth(t, cfg(tc.now, nil), peer.Certificates); got != tc.want {
			t.Errorf("at %v (window %v..%v): %v, want %v", tc.now, nb, na, got, tc.want)
		}
	}

	now := time.Now()
	inter := ca.Intermediate()
	viaInter := inter.Issue("/via")
	expiredInter := ca.Issue("/late", mtlstest.Expired())
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		a     mtls.Authorizer
		want  mtls.Reason
	}{
		{"no certificate", nil, nil, mtls.ReasonNoCertificate},
		{"own trust domain", ca.Issue("/a").Certificates, nil, mtls.ReasonOK},
		{"leaf is a CA", ca.Issue("/ca", mtlstest.AsCA()).Certificates, nil, mtls.ReasonBadCertificate},
		{"no identity", ca.Issue("/x", mtlstest.WithoutURI()).Certificates, nil, mtls.ReasonBadCertificate},
		{"two URIs", ca.Issue("/x", mtlstest.WithExtraURI("spiffe://limits.test/y")).Certificates, nil, mtls.ReasonBadCertificate},
		{"unknown trust domain", other.Issue("/a").Certificates, nil, mtls.ReasonUnknownTrustDomain},
		{"wrong signer for its trust domain", other.Issue("spiffe://limits.test/a").Certificates, nil, mtls.ReasonUntrusted},
		{"with its intermediate", viaInter.Certificates, nil, mtls.ReasonOK},
		{"without its intermediate", viaInter.Certificates[:1], nil, mtls.ReasonUntrusted},
		{"expired", expiredInter.Certificates, nil, mtls.ReasonExpired},
		{"not yet valid", ca.Issue("/early", mtlstest.NotYetValid()).Certificates, nil, mtls.ReasonNotYetValid},
		{"refused by the authorizer", ca.Issue("/a").Certificates, mtls.AuthorizeID(ca.ID("/b")), mtls.ReasonUnauthorized},
		{"allowed by the authorizer", ca.Issue("/b").Certificates, mtls.AuthorizeID(ca.ID("/b")), mtls.ReasonOK},
	} {
		if got := verifyBoth(t, cfg(now, tc.a), tc.chain); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}

	// A federated peer: trusted through its bundle, refused by the default
	// authorizer (own trust domain only), accepted by one that names it.
	fed := ca.Source("/me", other)
	fpeer := other.Issue("/f").Certificates
	for _, tc := range []struct {
		a    mtls.Authorizer
		want mtls.Reason
	}{
		{nil, mtls.ReasonUnauthorized},
		{mtls.AuthorizeMemberOf(other.TrustDomain()), mtls.ReasonOK},
		{mtls.AuthorizeAny(), mtls.ReasonOK},
	} {
		c := mtls.Config{SVID: fed, Bundle: fed, Authorize: tc.a}
		if got := verifyBoth(t, c, fpeer); got != tc.want {
			t.Errorf("federated peer: %v, want %v", got, tc.want)
		}
	}

	// The authorizer's own error is reachable through the VerifyError.
	mine := errors.New("not today")
	c1 := cfg(now, func(spiffe.ID, [][]*x509.Certificate) error { return mine })
	srv, _ := c1.ServerTLS()
	if err := srv.VerifyConnection(tls.ConnectionState{PeerCertificates: ca.Issue("/a").Certificates}); !errors.Is(err, mine) {
		t.Errorf("authorizer's error: %v", err)
	}
	// The authorizer sees the verified chains, leaf first, ending at the root.
	var seen [][]*x509.Certificate
	c2 := cfg(now, func(_ spiffe.ID, chains [][]*x509.Certificate) error { seen = chains; return nil })
	srv, _ = c2.ServerTLS()
	if err := srv.VerifyConnection(tls.ConnectionState{PeerCertificates: viaInter.Certificates}); err != nil ||
		len(seen) == 0 || len(seen[0]) != 3 || !seen[0][0].Equal(viaInter.Certificates[0]) || !seen[0][2].Equal(ca.Root()) {
		t.Errorf("chains seen by the authorizer: %d %v", len(seen), err)
	}

	// Identity modes past the last are refused at configuration time.
	bad := mtls.Config{SVID: local, Bundle: local, Identity: mtls.IdentityLinkerdDNS + 1}
	if _, err := bad.ServerTLS(); err == nil {
		t.Error("unknown identity mode accepted")
	}
	if _, err := (&mtls.Config{SVID: local, Bundle: local, Identity: mtls.IdentityLinkerdDNS}).ServerTLS(); err != nil {
		t.Errorf("IdentityLinkerdDNS: %v", err)
	}
}

// TestLimitsOwnTrustDomain: without an Authorizer the own trust domain
// comes from the current SVID: its ID, else its leaf.
func TestLimitsOwnTrustDomain(t *testing.T) {
	defer boundTime(t)()
	ca := mtlstest.MustNew("own.test")
	peer := ca.Issue("/p").Certificates
	svid := ca.Issue("/me")
	noID := *svid
	noID.ID = spiffe.ID{}
	for _, tc := range []struct {
		name string
		svid *spiffe.SVID
		want mtls.Reason
	}{
		{"with its ID", svid, mtls.ReasonOK},
		{"ID from the leaf", &noID, mtls.ReasonOK},
	} {
		src := mtls.NewStaticSource(tc.svid, ca.Bundle())
		if got := verifyBoth(t, mtls.Config{SVID: src, Bundle: src}, peer); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLimitsAuthorizePrefix(t *testing.T) {
	defer boundTime(t)()
	id := spiffe.MustParseID
	for _, tc := range []struct {
		prefix, peer string
		ok           bool
	}{
		{"spiffe://a.test/ns/prod", "spiffe://a.test/ns/prod", true},
		{"spiffe://a.test/ns/prod", "spiffe://a.test/ns/prod/sa", true},
		{"spiffe://a.test/ns/prod", "spiffe://a.test/ns/prod/s", true},
		{"spiffe://a.test/ns/prod", "spiffe://a.test/ns/prodx", false},
		{"spiffe://a.test/ns/prod", "spiffe://a.test/ns/pro", false},
		{"spiffe://a.test/ns/prod", "spiffe://a.test/ns", false},
		{"spiffe://a.test/ns/prod", "spiffe://a.test", false},
		{"spiffe://a.test/ns/prod", "spiffe://b.test/ns/prod", false},
		{"spiffe://a.test/ns/prod", "spiffe://b.test/ns/prod/sa", false},
		{"spiffe://a.test", "spiffe://a.test", true},
		{"spiffe://a.test", "spiffe://a.test/x", true},
		{"spiffe://a.test", "spiffe://b.test/x", false},
		{"spiffe://a.test/x", "spiffe://a.test/x/y/z", true},
		{"spiffe://a.test/x", "spiffe://a.test/xy/z", false},
	} {
		err := mtls.AuthorizePrefix(id(tc.prefix))(id(tc.peer), nil)
		if (err == nil) != tc.ok {
			t.Errorf("prefix %s, peer %s: %v, want ok %v", tc.prefix, tc.peer, err, tc.ok)
		}
	}
	web := id("spiffe://a.test/web")
	if err := mtls.AuthorizeFunc(nil)(web, nil); err == nil {
		t.Error("AuthorizeFunc(nil) accepted")
	}
	if err := mtls.AuthorizeFunc(func(p spiffe.ID) bool { return p == web })(web, nil); err != nil {
		t.Error(err)
	}
	if err := mtls.AuthorizeFunc(func(p spiffe.ID) bool { return p == web })(id("spiffe://a.test/x"), nil); err == nil {
		t.Error("AuthorizeFunc accepted what its predicate refused")
	}
	if err := mtls.AuthorizeOneOf(web, web)(web, nil); err != nil {
		t.Error(err)
	}
	if err := mtls.AuthorizeOneOf()(web, nil); err == nil {
		t.Error("AuthorizeOneOf() accepted")
	}
}

// TestLimitsPeerID: before the handshake, without certificates, and with
// a leaf whose identity is a URI SAN or a Linkerd DNS SAN.
func TestLimitsPeerID(t *testing.T) {
	defer boundTime(t)()
	ca := mtlstest.MustNew("peer.test")
	spiffe := ca.Issue("/ns/default/sa/web").Certificates
	if _, err := mtls.PeerID(tls.ConnectionState{PeerCertificates: spiffe}); !errors.Is(err, mtls.ErrNoPeerID) {
		t.Errorf("before the handshake: %v", err)
	}
	if _, err := mtls.PeerID(tls.ConnectionState{HandshakeComplete: true}); !errors.Is(err, mtls.ErrNoPeerID) {
		t.Errorf("no certificate: %v", err)
	}
	got, err := mtls.PeerID(tls.ConnectionState{HandshakeComplete: true, PeerCertificates: spiffe})
	if err != nil || got != ca.ID("/ns/default/sa/web") {
		t.Errorf("URI SAN: %v %v", got, err)
	}
	ld := ca.IssueLinkerd("web.default.serviceaccount.identity.linkerd.peer.test").Certificates
	got, err = mtls.PeerID(tls.ConnectionState{HandshakeComplete: true, PeerCertificates: ld})
	if err != nil || got.Path() != "/ns/default/sa/web" {
		t.Errorf("Linkerd DNS SAN: %v %v", got, err)
	}
	none := ca.Issue("/x", mtlstest.WithoutURI()).Certificates
	if _, err := mtls.PeerID(tls.ConnectionState{HandshakeComplete: true, PeerCertificates: none}); mtls.Classify(err) != mtls.ReasonBadCertificate {
		t.Errorf("no identity: %v", err)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return false }

func TestLimitsClassify(t *testing.T) {
	defer boundTime(t)()
	for _, tc := range []struct {
		err  error
		want mtls.Reason
	}{
		{nil, mtls.ReasonOK},
		{errors.New("tls:"), mtls.ReasonOther},
		{errors.New("tls:x"), mtls.ReasonProtocol},
		{errors.New("tls: no application protocol"), mtls.ReasonProtocol},
		{errors.New("tlsx"), mtls.ReasonOther},
		{errors.New("tl"), mtls.ReasonOther},
		{timeoutErr{}, mtls.ReasonTimeout},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, mtls.ReasonRejected},
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, mtls.ReasonIO},
		{fmt.Errorf("wrapped: %w", net.ErrClosed), mtls.ReasonIO},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, mtls.ReasonProtocol},
	} {
		if got := mtls.Classify(tc.err); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.err, got, tc.want)
		}
	}
}

// boundTime makes the test binary fail at once, with every goroutine's
// stack, when a test runs past its bound: a planted bug that makes a parser
// loop then fails in seconds instead of hanging until the run's timeout.
func boundTime(t *testing.T) (stop func()) {
	const d = 60 * time.Second
	tm := time.AfterFunc(d, func() { panic(fmt.Sprintf("%s ran past %v: a parser loops", t.Name(), d)) })
	return func() { tm.Stop() }
}

// svidSource and bundleSource answer with what they hold.
type svidSource struct{ svid *spiffe.SVID }

func (s svidSource) SVID() (*spiffe.SVID, error) { return s.svid, nil }

type bundleSource struct {
	b   *spiffe.Bundle
	err error
}

func (s bundleSource) BundleFor(spiffe.TrustDomain) (*spiffe.Bundle, error) {
	return s.b, s.err
}

func TestLimitsSources(t *testing.T) {
	defer boundTime(t)()
	ca := mtlstest.MustNew("src.test")
	peer := ca.Issue("/p").Certificates
	src := ca.Source("/me")

	// Configurations without their sources are refused.
	for _, tc := range []struct {
		c    *mtls.Config
		want error
	}{
		{nil, mtls.ErrNoSVIDSource},
		{&mtls.Config{}, mtls.ErrNoSVIDSource},
		{&mtls.Config{Bundle: src}, mtls.ErrNoSVIDSource},
		{&mtls.Config{SVID: src}, mtls.ErrNoBundleSource},
	} {
		if _, err := tc.c.ServerTLS(); !errors.Is(err, tc.want) {
			t.Errorf("ServerTLS: %v, want %v", err, tc.want)
		}
		if _, err := tc.c.ClientTLS(); !errors.Is(err, tc.want) {
			t.Errorf("ClientTLS: %v, want %v", err, tc.want)
		}
	}

	// A bundle source that has no bundle (nil, nil) or fails: unknown
	// trust domain, with the source's error kept.
	mine := errors.New("bundle store down")
	for _, tc := range []struct {
		bs   bundleSource
		text string
	}{
		{bundleSource{}, "nil bundle"},
		{bundleSource{err: mine}, mine.Error()},
	} {
		c := mtls.Config{SVID: src, Bundle: tc.bs}
		srv, err := c.ServerTLS()
		if err != nil {
			t.Fatal(err)
		}
		err = srv.VerifyConnection(tls.ConnectionState{PeerCertificates: peer})
		if mtls.Classify(err) != mtls.ReasonUnknownTrustDomain || !strings.Contains(err.Error(), tc.text) ||
			tc.bs.err != nil && !errors.Is(err, tc.bs.err) {
			t.Errorf("%q: %v", tc.text, err)
		}
	}

	// Without an Authorizer, an own SVID with neither ID nor certificate
	// refuses the peer (it does not panic).
	c := mtls.Config{SVID: svidSource{&spiffe.SVID{}}, Bundle: src}
	srv, err := c.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.VerifyConnection(tls.ConnectionState{PeerCertificates: peer}); mtls.Classify(err) != mtls.ReasonUnauthorized {
		t.Errorf("own SVID without identity: %v", err)
	}

	// The certificate served follows the source: a rotated SVID is served
	// at the next handshake, the same one is not converted again.
	rot := ca.Source("/rot")
	c = mtls.Config{SVID: rot, Bundle: rot}
	srv, err = c.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := c.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	first, err := srv.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := srv.GetCertificate(&tls.ClientHelloInfo{})
	if again != first {
		t.Error("the same SVID converted again")
	}
	next := ca.Issue("/rot2")
	rot.SetSVID(next)
	for name, get := range map[string]func() (*tls.Certificate, error){
		"server": func() (*tls.Certificate, error) { return srv.GetCertificate(&tls.ClientHelloInfo{}) },
		"client": func() (*tls.Certificate, error) { return cli.GetClientCertificate(&tls.CertificateRequestInfo{}) },
	} {
		got, err := get()
		if err != nil || !got.Leaf.Equal(next.Certificates[0]) {
			t.Errorf("%s after rotation: still the old certificate (%v)", name, err)
		}
	}
	if mtls.DefaultHandshakeTimeout != 10*time.Second {
		t.Errorf("DefaultHandshakeTimeout %v, documented as 10 s", mtls.DefaultHandshakeTimeout)
	}
}
