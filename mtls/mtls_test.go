package mtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/mtls/mtlstest"
	"github.com/sniffsplice/sniff/spiffe"
)

const transportALPN = "transport.l5d.io/v1" // opaque.ALPN

// events collects OnHandshake events.
type events struct {
	mu  sync.Mutex
	evs []mtls.HandshakeEvent
}

func (e *events) hook(ev mtls.HandshakeEvent) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *events) all() []mtls.HandshakeEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]mtls.HandshakeEvent(nil), e.evs...)
}

func TestHandshakeSuccess(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	srvSrc := ca.Source("/ns/default/sa/server")
	cliSrc := ca.Source("/ns/default/sa/client")
	var srvEv, cliEv events
	srv := mustServer(t, &mtls.Config{
		SVID: srvSrc, Bundle: srvSrc,
		Authorize:   mtls.AuthorizeID(ca.ID("/ns/default/sa/client")),
		NextProtos:  []string{transportALPN},
		OnHandshake: srvEv.hook,
	})
	cli := mustClient(t, &mtls.Config{
		SVID: cliSrc, Bundle: cliSrc,
		Authorize:   mtls.AuthorizeID(ca.ID("/ns/default/sa/server")),
		NextProtos:  []string{"h2", transportALPN},
		OnHandshake: cliEv.hook,
	})
	o := exchange(t, srv, tlsClient(cli))
	require.NoError(t, o.srvErr)
	require.NoError(t, o.cliErr)
	require.NoError(t, o.cliReadErr)
	assert.Equal(t, "ok\n", o.cliRead)
	assert.Equal(t, "spiffe://example.org/ns/default/sa/client", o.srvID.String())
	assert.Equal(t, "spiffe://example.org/ns/default/sa/server", o.cliID.String())
	assert.Equal(t, transportALPN, o.srvState.NegotiatedProtocol)
	assert.Equal(t, transportALPN, o.cliState.NegotiatedProtocol)
	assert.Equal(t, uint16(tls.VersionTLS13), o.cliState.Version)
	assert.False(t, o.cliState.DidResume)

	id, err := mtls.PeerID(o.srvState)
	require.NoError(t, err)
	assert.Equal(t, o.srvID, id)

	se := srvEv.all()
	require.Len(t, se, 1)
	assert.True(t, se[0].Server)
	assert.Equal(t, mtls.ReasonOK, se[0].Reason)
	assert.NoError(t, se[0].Err)
	assert.Equal(t, o.srvID, se[0].PeerID)
	assert.Positive(t, se[0].Duration)
	assert.Equal(t, transportALPN, se[0].NegotiatedProtocol)
	ce := cliEv.all()
	require.Len(t, ce, 1)
	assert.False(t, ce[0].Server)
	assert.Equal(t, mtls.ReasonOK, ce[0].Reason)
	assert.Equal(t, o.cliID, ce[0].PeerID)
}

func TestHandshakeDefaultAuthorizerAndIntermediates(t *testing.T) {
	root := mtlstest.MustNew("example.org")
	inter := root.Intermediate().Intermediate()
	srvSVID := inter.Issue("/server")
	require.Len(t, srvSVID.Certificates, 3)
	bundle := root.Bundle()
	srvSrc := mtls.NewStaticSource(srvSVID, bundle)
	cliSrc := mtls.NewStaticSource(root.Issue("/client"), bundle)
	o := exchange(t,
		mustServer(t, &mtls.Config{SVID: srvSrc, Bundle: srvSrc}),
		tlsClient(mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc})))
	require.NoError(t, o.srvErr)
	require.NoError(t, o.cliErr)
	require.NoError(t, o.cliReadErr)
	assert.Equal(t, "spiffe://example.org/client", o.srvID.String())
	assert.Equal(t, "spiffe://example.org/server", o.cliID.String())
}

// TestServerRefusesClient covers refusals decided by the server. In TLS 1.3
// the client's handshake completes before the server has judged the
// client's certificate, so the client sees the refusal on its first Read.
func TestServerRefusesClient(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	other := mtlstest.MustNew("other.org")
	impostor := mtlstest.MustNew("example.org") // same name, different key
	good := ca.Issue("/client")

	cases := []struct {
		name      string
		svid      *spiffe.SVID // nil: no client certificate at all
		authorize mtls.Authorizer
		federate  bool // server also trusts other.org
		want      error
		reason    mtls.Reason
	}{
		{"wrong ID", good, mtls.AuthorizeID(ca.ID("/someone-else")), false, mtls.ErrUnauthorized, mtls.ReasonUnauthorized},
		{"not in set", good, mtls.AuthorizeOneOf(ca.ID("/a"), ca.ID("/b")), false, mtls.ErrUnauthorized, mtls.ReasonUnauthorized},
		{"outside prefix", ca.Issue("/ns/production/x"), mtls.AuthorizePrefix(ca.ID("/ns/prod")), false, mtls.ErrUnauthorized, mtls.ReasonUnauthorized},
		{"custom func", good, mtls.AuthorizeFunc(func(spiffe.ID) bool { return false }), false, mtls.ErrUnauthorized, mtls.ReasonUnauthorized},
		{"wrong trust domain, no bundle", other.Issue("/client"), nil, false, mtls.ErrUnknownTrustDomain, mtls.ReasonUnknownTrustDomain},
		{"wrong trust domain, federated but not member", other.Issue("/client"), nil, true, mtls.ErrUnauthorized, mtls.ReasonUnauthorized},
		{"ID of other trust domain signed by our CA", ca.Issue("spiffe://other.org/client"), nil, true, mtls.ErrUntrusted, mtls.ReasonUntrusted},
		{"untrusted CA", impostor.Issue("/client"), nil, false, mtls.ErrUntrusted, mtls.ReasonUntrusted},
		{"expired", ca.Issue("/client", mtlstest.Expired()), nil, false, mtls.ErrExpired, mtls.ReasonExpired},
		{"not yet valid", ca.Issue("/client", mtlstest.NotYetValid()), nil, false, mtls.ErrNotYetValid, mtls.ReasonNotYetValid},
		{"two URI SANs", ca.Issue("/client", mtlstest.WithExtraURI("spiffe://example.org/admin")), nil, false, mtls.ErrBadCertificate, mtls.ReasonBadCertificate},
		{"no URI SAN", ca.Issue("/client", mtlstest.WithoutURI(), mtlstest.WithDNSNames("client.example.org")), nil, false, mtls.ErrBadCertificate, mtls.ReasonBadCertificate},
		{"CA leaf", ca.Issue("/client", mtlstest.AsCA()), nil, false, mtls.ErrBadCertificate, mtls.ReasonBadCertificate},
		{"no client certificate", nil, nil, false, mtls.ErrNoPeerCertificate, mtls.ReasonNoCertificate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bundles := []*spiffe.Bundle{ca.Bundle()}
			if tc.federate {
				bundles = append(bundles, other.Bundle())
			}
			srvSrc := mtls.NewStaticSource(ca.Issue("/server"), bundles...)
			var ev events
			srv := mustServer(t, &mtls.Config{SVID: srvSrc, Bundle: srvSrc, Authorize: tc.authorize, OnHandshake: ev.hook})

			var cli *tls.Config
			if tc.svid != nil {
				cliSrc := mtls.NewStaticSource(tc.svid, ca.Bundle())
				cli = mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc, Authorize: mtls.AuthorizeAny()})
			} else {
				// A TLS 1.3 client that verifies the server but has no certificate.
				cli = &tls.Config{
					MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
					VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error { return nil },
				}
			}
			o := exchange(t, srv, tlsClient(cli))

			require.Error(t, o.srvErr)
			assert.ErrorIs(t, o.srvErr, tc.want)
			ve, ok := errors.AsType[*mtls.VerifyError](o.srvErr)
			require.True(t, ok, "server error %T %v", o.srvErr, o.srvErr)
			assert.Equal(t, tc.reason, ve.Reason)
			assert.Equal(t, tc.reason, mtls.Classify(o.srvErr))
			assert.True(t, o.srvID.IsZero())

			// The client's handshake succeeded; the refusal comes on Read.
			require.NoError(t, o.cliErr, "TLS 1.3 client handshake completes before the server judges it")
			require.Error(t, o.cliReadErr)
			assert.Equal(t, mtls.ReasonRejected, mtls.Classify(o.cliReadErr), "client read error: %v", o.cliReadErr)
			assert.Contains(t, o.cliReadErr.Error(), "bad certificate")
			assert.Empty(t, o.cliRead)

			evs := ev.all()
			require.Len(t, evs, 1)
			assert.Equal(t, tc.reason, evs[0].Reason)
			assert.ErrorIs(t, evs[0].Err, tc.want)
			assert.True(t, evs[0].Server)
		})
	}
}

// TestClientRefusesServer covers refusals decided by the client: there the
// client's Handshake itself fails.
func TestClientRefusesServer(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	impostor := mtlstest.MustNew("example.org")
	other := mtlstest.MustNew("other.org")
	cases := []struct {
		name      string
		srvSVID   *spiffe.SVID
		authorize mtls.Authorizer
		want      error
	}{
		{"wrong ID", ca.Issue("/server"), mtls.AuthorizeID(ca.ID("/expected")), mtls.ErrUnauthorized},
		{"wrong trust domain", other.Issue("/server"), nil, mtls.ErrUnknownTrustDomain},
		{"untrusted CA", impostor.Issue("/server"), nil, mtls.ErrUntrusted},
		{"expired", ca.Issue("/server", mtlstest.Expired()), nil, mtls.ErrExpired},
		{"not yet valid", ca.Issue("/server", mtlstest.NotYetValid()), nil, mtls.ErrNotYetValid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srvSrc := mtls.NewStaticSource(tc.srvSVID, ca.Bundle(), other.Bundle())
			cliSrc := ca.Source("/client")
			var ev events
			o := exchange(t,
				mustServer(t, &mtls.Config{SVID: srvSrc, Bundle: srvSrc, Authorize: mtls.AuthorizeAny()}),
				tlsClient(mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc, Authorize: tc.authorize, OnHandshake: ev.hook})))
			require.Error(t, o.cliErr)
			assert.ErrorIs(t, o.cliErr, tc.want)
			assert.True(t, o.cliID.IsZero())
			require.Error(t, o.srvErr)
			assert.Equal(t, mtls.ReasonRejected, mtls.Classify(o.srvErr), "server error: %v", o.srvErr)
			evs := ev.all()
			require.Len(t, evs, 1)
			assert.False(t, evs[0].Server)
			assert.ErrorIs(t, evs[0].Err, tc.want)
		})
	}
}

func TestPlaintextClientRefused(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	src := ca.Source("/server")
	var ev events
	srv := mustServer(t, &mtls.Config{SVID: src, Bundle: src, OnHandshake: ev.hook})
	o := exchange(t, srv, func(ctx context.Context, c net.Conn) (spiffe.ID, *tls.Conn, error) {
		_, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		return spiffe.ID{}, nil, err
	})
	require.Error(t, o.srvErr)
	_, ok := errors.AsType[tls.RecordHeaderError](o.srvErr)
	assert.True(t, ok, "%T %v", o.srvErr, o.srvErr)
	assert.Equal(t, mtls.ReasonProtocol, mtls.Classify(o.srvErr))
	assert.True(t, o.srvID.IsZero())
	assert.Empty(t, ev.all(), "no ClientHello, nothing reported by the hook")
}

func TestTLS12ClientRefused(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	src := ca.Source("/server")
	cliSrc := ca.Source("/client")
	var ev events
	srv := mustServer(t, &mtls.Config{SVID: src, Bundle: src, OnHandshake: ev.hook})
	cli := mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc})
	cli.MinVersion, cli.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	o := exchange(t, srv, tlsClient(cli))
	require.Error(t, o.srvErr)
	assert.Contains(t, o.srvErr.Error(), "unsupported versions")
	assert.Equal(t, mtls.ReasonProtocol, mtls.Classify(o.srvErr))
	require.Error(t, o.cliErr)
	assert.Contains(t, o.cliErr.Error(), "protocol version not supported")
	assert.Equal(t, mtls.ReasonRejected, mtls.Classify(o.cliErr))
	evs := ev.all()
	require.Len(t, evs, 1)
	assert.Equal(t, mtls.ReasonProtocol, evs[0].Reason)
	assert.ErrorIs(t, evs[0].Err, mtls.ErrNotTLS13)
}

func TestALPNMismatchRefused(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	src := ca.Source("/server")
	cliSrc := ca.Source("/client")
	o := exchange(t,
		mustServer(t, &mtls.Config{SVID: src, Bundle: src, NextProtos: []string{transportALPN}}),
		tlsClient(mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc, NextProtos: []string{"h2"}})))
	require.Error(t, o.srvErr)
	assert.Equal(t, mtls.ReasonProtocol, mtls.Classify(o.srvErr))
	require.Error(t, o.cliErr)
	assert.Equal(t, mtls.ReasonRejected, mtls.Classify(o.cliErr))
}

func TestHandshakeTimeoutAndCancel(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	src := ca.Source("/server")
	srv := mustServer(t, &mtls.Config{SVID: src, Bundle: src})
	for _, cancelIt := range []bool{false, true} {
		a, b := net.Pipe() // a silent client
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if cancelIt {
			cancel()
		}
		id, err := mtls.Handshake(ctx, tls.Server(a, srv))
		cancel()
		require.Error(t, err)
		assert.True(t, id.IsZero())
		if cancelIt {
			assert.ErrorIs(t, err, context.Canceled)
			assert.Equal(t, mtls.ReasonCanceled, mtls.Classify(err))
		} else {
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Equal(t, mtls.ReasonTimeout, mtls.Classify(err))
		}
		// crypto/tls closed the connection: the other end sees EOF.
		_, rerr := b.Read(make([]byte, 1))
		assert.Error(t, rerr)
		b.Close()
	}
}

func TestPeerIDWithoutHandshake(t *testing.T) {
	_, err := mtls.PeerID(tls.ConnectionState{})
	assert.ErrorIs(t, err, mtls.ErrNoPeerID)
}

func TestConfigErrors(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	src := ca.Source("/x")
	for _, c := range []struct {
		cfg  *mtls.Config
		want error
	}{
		{&mtls.Config{}, mtls.ErrNoSVIDSource},
		{&mtls.Config{SVID: src}, mtls.ErrNoBundleSource},
		{nil, mtls.ErrNoSVIDSource},
	} {
		_, err := c.cfg.ServerTLS()
		assert.ErrorIs(t, err, c.want)
		_, err = c.cfg.ClientTLS()
		assert.ErrorIs(t, err, c.want)
	}
	_, err := (&mtls.Config{SVID: src, Bundle: src, Identity: 9}).ServerTLS()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown IdentityMode 9")
}

// A source that fails makes the handshake fail on that side with ErrNoSVID.
func TestEmptySourceFailsHandshake(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	empty := mtls.NewStaticSource(nil, ca.Bundle())
	cliSrc := ca.Source("/client")
	o := exchange(t,
		mustServer(t, &mtls.Config{SVID: empty, Bundle: empty}),
		tlsClient(mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc})))
	require.Error(t, o.srvErr)
	assert.ErrorIs(t, o.srvErr, mtls.ErrNoSVID)
	assert.ErrorIs(t, o.srvErr, mtls.ErrSourceEmpty)
	assert.Equal(t, mtls.ReasonLocal, mtls.Classify(o.srvErr))
	require.Error(t, o.cliErr)
}

// TestHandshakeOwnGoroutine: Handshake runs the handshake on a goroutine of
// its own (the stack it grows is freed when it ends, not kept by the caller's
// goroutine for the connection's life): the verification hook, called during
// the handshake, does not find the caller on its stack. A completed
// handshake is not run again.
func TestHandshakeOwnGoroutine(t *testing.T) {
	ca := mtlstest.MustNew("example.org")
	srvSrc, cliSrc := ca.Source("/server"), ca.Source("/client")
	stacks := make(chan string, 2)
	hook := func(mtls.HandshakeEvent) {
		buf := make([]byte, 64<<10)
		stacks <- string(buf[:runtime.Stack(buf, false)])
	}
	srv := mustServer(t, &mtls.Config{SVID: srvSrc, Bundle: srvSrc, OnHandshake: hook})
	cli := mustClient(t, &mtls.Config{SVID: cliSrc, Bundle: cliSrc, OnHandshake: hook})
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errs := make(chan error, 1)
	go func() { _, err := handshakeFromHere(tls.Client(b, cli)); errs <- err }()
	stc := tls.Server(a, srv)
	_, err := handshakeFromHere(stc)
	require.NoError(t, err)
	require.NoError(t, <-errs)
	for range 2 {
		s := <-stacks
		assert.Contains(t, s, "crypto/tls.(*Conn).HandshakeContext")
		assert.NotContains(t, s, "handshakeFromHere", "the handshake ran on the caller's goroutine")
	}
	id, err := handshakeFromHere(stc)
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/client", id.String())
	assert.Empty(t, stacks, "a completed handshake ran again")
}

//go:noinline
func handshakeFromHere(c *tls.Conn) (spiffe.ID, error) {
	return mtls.Handshake(context.Background(), c)
}
