package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sniffsplice/sniff/spiffe"
)

// ErrNotTLS13 is reported (to [Config.OnHandshake]) when a client's hello does not offer TLS 1.3;
// crypto/tls then refuses the handshake with a protocol_version alert.
var ErrNotTLS13 = errors.New("mtls: peer does not offer TLS 1.3")

// Config describes one side of a mutual-TLS connection. Build it once and call [Config.ServerTLS]
// or [Config.ClientTLS]; the sources are consulted on every handshake, so rotation needs no
// rebuild. A Config must not be modified after a *tls.Config has been built from it.
type Config struct {
	// SVID gives this workload's certificate chain and key. Required.
	SVID spiffe.SVIDSource
	// Bundle gives the trust anchors of each trust domain a peer may come from. Required.
	Bundle spiffe.BundleSource
	// Authorize decides which verified peers may connect. nil: any member of this workload's own
	// trust domain (the trust domain of the current SVID).
	Authorize Authorizer
	// NextProtos lists the ALPN protocols to offer (client) or accept (server), most preferred
	// first, e.g. "transport.l5d.io/v1", "h2". When both sides set it and share none, crypto/tls
	// refuses the handshake.
	NextProtos []string
	// SessionTickets enables TLS 1.3 session resumption (off by default). Authorization and chain
	// verification still run on every resumed handshake, against the current bundle and time.
	SessionTickets bool
	// ClientSessionCache is the client's session cache when SessionTickets is set; nil: a new LRU
	// cache of 64 entries per ClientTLS call.
	ClientSessionCache tls.ClientSessionCache
	// Identity selects where peer identities are read from; the zero value is the SPIFFE URI SAN.
	Identity IdentityMode
	// Time returns the current time for certificate validity checks; nil: time.Now. Handshake
	// durations always use the monotonic clock.
	Time func() time.Time
	// OnHandshake, when non-nil, is called once for every handshake that reaches peer verification
	// (ok or refused), on either side. On the server it is also called for a ClientHello that does
	// not offer TLS 1.3 (ReasonProtocol). Failures before or after verification that this side
	// cannot see from inside crypto/tls (not TLS at all, I/O errors, timeouts, the peer refusing
	// our certificate) are not reported here; use [Classify] on the error of [Handshake] or of the
	// first Read for those. It runs on the handshake goroutine and must be fast and safe for
	// concurrent use.
	OnHandshake func(HandshakeEvent)
}

// HandshakeEvent describes one handshake, for [Config.OnHandshake].
type HandshakeEvent struct {
	// Server is this side's TLS role: true when it accepted the handshake. It is a role, not a
	// proxy direction: an inbound proxy is usually the server, but a proxy may originate TLS on
	// either side.
	Server bool
	PeerID spiffe.ID // the peer's identity; zero when it could not be read
	Reason Reason    // ReasonOK or why the peer was refused
	Err    error     // nil when Reason is ReasonOK
	// Duration is the time from the ClientHello's arrival to the end of peer verification on the
	// server side. On the client side it is zero: crypto/tls gives a client configuration no
	// callback at handshake start; time the Handshake call instead.
	Duration           time.Duration
	Resumed            bool   // the session was resumed from a ticket
	NegotiatedProtocol string // the ALPN protocol, "" if none
}

// ServerTLS returns a *tls.Config for accepting connections: TLS 1.3 only, the certificate fetched
// from c.SVID on every handshake, client certificates requested and verified in VerifyConnection (a
// client without one is refused with ErrNoPeerCertificate and a bad_certificate alert, so that the
// refusal is reported like every other), session tickets as c.SessionTickets says.
func (c *Config) ServerTLS() (*tls.Config, error) {
	v, err := c.newVerifier(true)
	if err != nil {
		return nil, err
	}
	certs := &certSource{src: c.SVID}
	base := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		ClientAuth:             tls.RequestClientCert,
		NextProtos:             append([]string(nil), c.NextProtos...),
		SessionTicketsDisabled: !c.SessionTickets,
		Time:                   c.Time,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return certs.get()
		},
	}
	base.VerifyConnection = func(cs tls.ConnectionState) error {
		return v.verifyConnection(cs, time.Time{})
	}
	if c.OnHandshake != nil {
		// A per-handshake copy of the configuration carries the start time to VerifyConnection.
		// Session ticket keys stay those of base (crypto/tls uses the original config's keys when
		// the returned one has none of its own).
		base.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			start := time.Now()
			if !slices.Contains(hi.SupportedVersions, tls.VersionTLS13) {
				v.report(HandshakeEvent{Server: true, Reason: ReasonProtocol, Err: ErrNotTLS13, Duration: time.Since(start)})
				return nil, nil
			}
			cl := base.Clone()
			cl.GetConfigForClient = nil
			cl.VerifyConnection = func(cs tls.ConnectionState) error {
				return v.verifyConnection(cs, start)
			}
			return cl, nil
		}
	}
	return base, nil
}

// ClientTLS returns a *tls.Config for dialing: TLS 1.3 only, the client certificate fetched from
// c.SVID on every handshake, the server verified in VerifyConnection against c.Bundle and
// c.Authorize. crypto/tls's own hostname verification is off (InsecureSkipVerify) because the
// server is identified by its SPIFFE ID, so ServerName is only sent as SNI.
func (c *Config) ClientTLS() (*tls.Config, error) {
	v, err := c.newVerifier(false)
	if err != nil {
		return nil, err
	}
	certs := &certSource{src: c.SVID}
	tc := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		InsecureSkipVerify:     true, // verified in VerifyConnection against the SPIFFE bundle
		NextProtos:             append([]string(nil), c.NextProtos...),
		SessionTicketsDisabled: !c.SessionTickets,
		Time:                   c.Time,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return certs.get()
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return v.verifyConnection(cs, time.Time{})
		},
	}
	if c.SessionTickets {
		tc.ClientSessionCache = c.ClientSessionCache
		if tc.ClientSessionCache == nil {
			tc.ClientSessionCache = tls.NewLRUClientSessionCache(64)
		}
	}
	return tc, nil
}

// certSource turns the SVID source's current SVID into a *tls.Certificate, converting again only
// when the source hands out a different SVID.
type certSource struct {
	src  spiffe.SVIDSource
	last atomic.Pointer[certEntry]
}

type certEntry struct {
	svid *spiffe.SVID
	cert *tls.Certificate
}

func (s *certSource) get() (*tls.Certificate, error) {
	svid, err := s.src.SVID()
	if err != nil {
		return nil, &causeError{ErrNoSVID, err}
	}
	if svid == nil || len(svid.Certificates) == 0 || svid.PrivateKey == nil {
		return nil, ErrNoSVID
	}
	if e := s.last.Load(); e != nil && e.svid == svid {
		return e.cert, nil
	}
	raw := make([][]byte, len(svid.Certificates))
	for i, c := range svid.Certificates {
		raw[i] = c.Raw
	}
	cert := &tls.Certificate{Certificate: raw, PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	s.last.Store(&certEntry{svid: svid, cert: cert})
	return cert, nil
}

// verifier checks a peer's chain and identity.
type verifier struct {
	server    bool
	svid      spiffe.SVIDSource
	bundle    spiffe.BundleSource
	authorize Authorizer
	mode      IdentityMode
	now       func() time.Time
	hook      func(HandshakeEvent)
}

func (c *Config) newVerifier(server bool) (*verifier, error) {
	switch {
	case c == nil || c.SVID == nil:
		return nil, ErrNoSVIDSource
	case c.Bundle == nil:
		return nil, ErrNoBundleSource
	}
	if c.Identity > IdentityLinkerdDNS {
		return nil, fmt.Errorf("mtls: unknown IdentityMode %d", c.Identity)
	}
	now := c.Time
	if now == nil {
		now = time.Now
	}
	return &verifier{
		server: server, svid: c.SVID, bundle: c.Bundle, authorize: c.Authorize,
		mode: c.Identity, now: now, hook: c.OnHandshake,
	}, nil
}

func (v *verifier) report(ev HandshakeEvent) {
	if v.hook != nil {
		v.hook(ev)
	}
}

func (v *verifier) verifyConnection(cs tls.ConnectionState, start time.Time) error {
	id, err := v.verify(cs.PeerCertificates)
	if v.hook != nil {
		ev := HandshakeEvent{
			Server: v.server, PeerID: id, Err: err, Resumed: cs.DidResume,
			NegotiatedProtocol: cs.NegotiatedProtocol,
		}
		if !start.IsZero() {
			ev.Duration = time.Since(start)
		}
		if err != nil {
			ev.Reason = Classify(err)
		}
		v.hook(ev)
	}
	return err
}

// verify checks the peer chain certs (leaf first) and returns the peer's identity. Errors are
// *VerifyError.
func (v *verifier) verify(certs []*x509.Certificate) (spiffe.ID, error) {
	if len(certs) == 0 {
		return spiffe.ID{}, &VerifyError{Reason: ReasonNoCertificate}
	}
	leaf := certs[0]
	id, err := idFromLeaf(leaf, v.mode)
	if err != nil {
		return spiffe.ID{}, &VerifyError{Reason: ReasonBadCertificate, Err: err}
	}
	switch {
	case leaf.IsCA:
		return id, &VerifyError{Reason: ReasonBadCertificate, PeerID: id, Err: errors.New("leaf certificate is a CA")}
	case leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return id, &VerifyError{Reason: ReasonBadCertificate, PeerID: id, Err: errors.New("leaf certificate may sign certificates or CRLs")}
	}
	bundle, err := v.bundle.BundleFor(id.TrustDomain())
	if err != nil || bundle == nil {
		if err == nil {
			err = errors.New("nil bundle")
		}
		return id, &VerifyError{Reason: ReasonUnknownTrustDomain, PeerID: id, Err: err}
	}
	roots := x509.NewCertPool()
	for _, a := range bundle.Authorities() {
		roots.AddCert(a)
	}
	opts := x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: v.now(),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if len(certs) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return id, &VerifyError{Reason: chainReason(err, certs, opts.CurrentTime), PeerID: id, Err: err}
	}
	authorize := v.authorize
	if authorize == nil {
		td, err := v.ownTrustDomain()
		if err != nil {
			return id, &VerifyError{Reason: ReasonUnauthorized, PeerID: id, Err: err}
		}
		authorize = AuthorizeMemberOf(td)
	}
	if err := authorize(id, chains); err != nil {
		return id, &VerifyError{Reason: ReasonUnauthorized, PeerID: id, Err: err}
	}
	return id, nil
}

func chainReason(err error, certs []*x509.Certificate, now time.Time) Reason {
	if ci, ok := errors.AsType[x509.CertificateInvalidError](err); ok && ci.Reason == x509.Expired {
		// x509 says "Expired" for both ends of the validity window.
		for _, c := range certs {
			if now.Before(c.NotBefore) {
				return ReasonNotYetValid
			}
		}
		return ReasonExpired
	}
	return ReasonUntrusted
}

// ownTrustDomain is the trust domain of the current SVID.
func (v *verifier) ownTrustDomain() (spiffe.TrustDomain, error) {
	svid, err := v.svid.SVID()
	if err != nil {
		return spiffe.TrustDomain{}, &causeError{ErrNoSVID, err}
	}
	if svid == nil {
		return spiffe.TrustDomain{}, ErrNoSVID
	}
	if !svid.ID.IsZero() {
		return svid.ID.TrustDomain(), nil
	}
	if len(svid.Certificates) > 0 {
		if id, err := idFromLeaf(svid.Certificates[0], v.mode); err == nil {
			return id.TrustDomain(), nil
		}
	}
	return spiffe.TrustDomain{}, fmt.Errorf("%w: own SVID has no identity", ErrNoSVID)
}
