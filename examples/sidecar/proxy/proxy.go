// Package proxy is the sidecar of examples/sidecar: an outbound and an inbound
// listener that together carry an application's TCP connections across a mesh,
// the way Linkerd's proxy does.
//
// Outbound, for each connection it learns the original destination (from
// SO_ORIGINAL_DST in transparent mode, or from an explicit table), resolves
// the port's policy (skip, opaque, declared protocol, detect) and carries the
// bytes to the peer sidecar's inbound port inside mutual TLS, with a transport
// header naming the real port. On ports left to detection it races the
// client's first bytes against the server's, so a server-speaks-first
// protocol is never held up by detection.
//
// Inbound, it terminates mutual TLS (checking the peer's SPIFFE identity),
// reads the transport header when the peer negotiated transport.l5d.io/v1,
// and otherwise applies the local port policy and detection, then forwards to
// the local application port.
//
// The same code runs in the sidecar binary (examples/sidecar), in the demo
// (examples/sidecar/demo) and in the tests.
package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/examples/internal/promtext"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/spiffe"
	"github.com/sniffsplice/sniff/splice"
)

// Errors a caller can test for with errors.Is.
var (
	// ErrNoOriginalDst: the original destination of a connection is unknown.
	ErrNoOriginalDst = errors.New("sidecar: no original destination")
	// ErrPeerIdentity: the peer sidecar presented an identity other than the expected one.
	ErrPeerIdentity = errors.New("sidecar: unexpected peer identity")
	// ErrNotMeshed: a connection reached the inbound port without mutual TLS.
	ErrNotMeshed = errors.New("sidecar: connection is not meshed")
	// ErrLoop: the destination is this sidecar's own listener (outbound), or
	// a transport header names the port of one of its listeners (inbound).
	ErrLoop = errors.New("sidecar: destination is the proxy itself")
	// ErrUnfinishedHTTP: on a port not declared opaque, a connection began
	// like an HTTP request that detection could not finish (longer than the
	// detection buffer, or slower than the detection timeout). It is answered
	// 431 or 408 and closed instead of being carried opaque, where the
	// headers it carries (a forged l5d-client-id) would reach the application
	// unchecked.
	ErrUnfinishedHTTP = errors.New("sidecar: unfinished HTTP request refused")
)

// Path names the way a connection went through a sidecar.
type Path string

// The paths a connection can take.
const (
	PathSkip        Path = "skip"         // policy: bypass the mesh, plain TCP to the destination
	PathOpaque      Path = "opaque"       // policy: opaque port, no detection
	PathDeclared    Path = "declared"     // policy: protocol declared, no detection
	PathDetect      Path = "detect"       // detection named the protocol (or unknown)
	PathServerFirst Path = "server-first" // the server spoke before the client: opaque at once
	PathLearned     Path = "learned"      // the port keeps turning out server-first: opaque, no detection
	PathHeader      Path = "header"       // inbound: the transport header named the port
)

// DstFunc returns where a connection accepted by an outbound listener was
// going: transparent.OriginalDst in transparent mode, Fixed for one listener per target.
type DstFunc func(net.Conn) (netip.AddrPort, error)

// Fixed returns a DstFunc that always answers dst: the explicit replacement for
// SO_ORIGINAL_DST when there are no iptables rules (one listener per target).
func Fixed(dst netip.AddrPort) DstFunc {
	return func(net.Conn) (netip.AddrPort, error) { return dst, nil }
}

// Peer is the sidecar in front of a destination.
type Peer struct {
	// Addr is the peer's inbound address (host:port). Empty: not meshed, the
	// connection goes straight to the destination without mutual TLS.
	Addr string
	// ID, when set, is the only identity the peer may present.
	ID spiffe.ID
}

// Event describes one proxied connection when it ends.
type Event struct {
	Direction opaque.Direction // the listener: outbound or inbound
	Dst       netip.AddrPort   // original destination (outbound) or local app address (inbound)
	Protocol  detect.Protocol  // detected or declared protocol; Unknown for opaque
	Path      Path
	Detect    detect.Result // the detection result when Path is detect or server-first
	// PeerID is the identity the other sidecar presented (zero when no mTLS).
	PeerID spiffe.ID
	// ClientBytes and ServerBytes count the bytes read from the accepted
	// connection and written to it.
	ClientBytes, ServerBytes int64
	Duration                 time.Duration
	Err                      error // why the connection failed, nil when it ran to the end

	// parked: the connection went on without its handler (an idle HTTP/1.1
	// keep-alive connection waiting in its listener's Waiter, park.go); emit
	// hands the event to it, and it is emitted when the connection ends.
	parked *h1Server
	// joined: the connection's join went on on a goroutine of its own
	// (finish), which emits its own copy of the event when the join ends;
	// emit leaves this one. began is when the handler took the connection,
	// for that copy's Duration.
	joined bool
	began  time.Time
}

// Proxy is one sidecar. Fill in the fields, then call ServeOutbound and
// ServeInbound (each in its own goroutine) or Handle* for single connections.
// The fields must not change once serving has started.
type Proxy struct {
	// TLS is the sidecar's identity. Its NextProtos is ignored: the proxy
	// offers transport.l5d.io/v1.
	TLS *mtls.Config
	// Policy resolves a port to skip / opaque / declared / detect. Nil: every
	// port is detected.
	Policy *opaque.Resolver
	// Detector is the base of the proxy's detectors: one per direction and
	// detection timeout of the policy, built on first use and kept, with the
	// metrics hook of its direction. Nil: the default detector.
	Detector *detect.Detector
	// Peers maps a destination to the sidecar in front of it. Nil: the
	// destination's own address at InboundPort, any identity of our trust domain.
	Peers func(dst netip.AddrPort) (Peer, error)
	// InboundPort is the peers' inbound port for the default Peers (0: 4143).
	InboundPort uint16
	// AppHost is where local applications listen (zero: 127.0.0.1).
	AppHost netip.Addr
	// NoRace turns off server-first racing on undeclared ports (for comparison).
	NoRace bool
	// DialTimeout bounds every dial and TLS handshake (0: 10s).
	DialTimeout time.Duration
	// Joiner carries the bytes once a connection is decided (nil: zero Joiner).
	Joiner *splice.Joiner
	// OnEvent, when set, is called once per connection when it ends.
	OnEvent func(Event)
	// Race says when a client on a port left to detection is raced against its server (the
	// upstream dialled to see whether it speaks first): only after the client has been silent for
	// a grace, at most MaxRaces at once, and never on a port whose clients keep naming their
	// protocol; a port that keeps turning out server-first is spliced at once. Its Learner, when
	// nil, is a zero detect.Learner of the proxy's own. Nil: a zero detect.RacePolicy (a 2 ms
	// grace, 256 races). A client that speaks within the grace costs no dial: HTTP clients never
	// cause a handshake to the peer that is thrown away.
	Race *detect.RacePolicy
	// MaxHandshakes bounds the mutual-TLS handshakes to peers in progress at once; more wait for a
	// slot within the dial timeout (0: DefaultMaxHandshakes).
	MaxHandshakes int
	// MaxWaiting bounds, per listener, the connections waiting for their first bytes (without a
	// goroutine each); a full listener sheds the one that waited longest, decided as a detection
	// timeout (0: detect.DefaultMaxWaiting).
	MaxWaiting int
	// MaxIdle bounds, per listener, the HTTP/1.1 keep-alive connections parked between requests
	// (without a goroutine or a buffer each); a full listener closes the one idle longest, and
	// above half of it their idle timeout shortens (0: detect.DefaultMaxWaiting). They are
	// counted apart from MaxWaiting: idle clients neither shorten the detection timeout of new
	// connections nor are shed by a flood of silent ones.
	MaxIdle int
	// IdleDetachAfter is how long a parked plain-TCP keep-alive connection waits as a net.Conn
	// before the listener keeps only its descriptor (about 1 KiB less per idle client; a wake-up
	// then costs a few system calls to make the net.Conn again): see detect.Waiter.DetachAfter
	// (0: detect.DefaultDetachAfter; negative: at once).
	IdleDetachAfter time.Duration
	// NoHTTP carries detected HTTP as bytes instead of serving it at the
	// HTTP layer (per-request proxying and metrics, upgrades, CONNECT).
	NoHTTP bool
	// ResponseTimeout bounds the wait for an upstream's response headers on
	// the HTTP layer; past it the client gets 504 (0: no limit).
	ResponseTimeout time.Duration
	// HeaderTimeout bounds the wait for a request's headers on the HTTP
	// layer, from its first byte (net/http's ReadHeaderTimeout); past it the
	// client gets 408 and the connection closes (0: 30s). An idle keep-alive
	// connection with no request begun closes without an answer.
	HeaderTimeout time.Duration
	// Metrics counts connections, bytes, detections, policy decisions,
	// handshakes and transport headers, and shows the Waiters' counts
	// (waiter="first_bytes" and "idle": WaitStats) (nil: off). Serve it
	// with MetricsHandler.
	Metrics *metrics.Registry

	once      sync.Once
	serverTLS *tls.Config
	clientTLS *tls.Config
	codec     opaque.HeaderCodec
	initErr   error
	http      httpState
	race      *detect.RacePolicy
	hsSem     chan struct{} // a slot per handshake to a peer in progress
	hsWaits   atomic.Uint64
	detOnce   sync.Once
	detectors [2]*detect.Detector // one per direction (opaque.Inbound, opaque.Outbound), built once
	waitMu    sync.Mutex
	listeners map[*listener]struct{} // serving now
	waitEnded [2]detect.WaitStats    // the first-bytes and idle Waiters' counts of listeners that have ended
	ownMu     sync.Mutex
	own       atomic.Pointer[opaque.PortSet] // ports of this proxy's listeners
}

// addOwnPort records the port of one of the proxy's listeners: a transport
// header that names it is refused (ErrLoop).
func (p *Proxy) addOwnPort(a net.Addr) {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta.Port <= 0 || ta.Port > 65535 {
		return
	}
	p.ownMu.Lock()
	defer p.ownMu.Unlock()
	set := opaque.NewPortSet(uint16(ta.Port))
	if old := p.own.Load(); old != nil {
		set = set.Union(*old)
	}
	p.own.Store(&set)
}

// isOwnPort reports whether port is one of the proxy's listeners'.
func (p *Proxy) isOwnPort(port uint16) bool {
	set := p.own.Load()
	return set != nil && set.Contains(port)
}

// learn feeds a detection result on port to the race policy's Learner. Out
// of line, so that the copy of res that Observe takes is not in the frame of
// a caller that goes on serving the connection (see detectInto).
//
//go:noinline
func (p *Proxy) learn(port uint16, res *detect.Result) {
	p.race.Learner.Observe(port, *res)
}

func (p *Proxy) init() error {
	p.once.Do(func() {
		if p.TLS == nil {
			p.initErr = errors.New("sidecar: Proxy.TLS is required")
			return
		}
		c := *p.TLS
		c.NextProtos = []string{opaque.ALPN}
		// Read at each scrape: the first-bytes and idle Waiters of every listener (WaitStats).
		p.Metrics.AddWaiter("first_bytes", func() detect.WaitStats { return p.WaitStats().FirstBytes })
		p.Metrics.AddWaiter("idle", func() detect.WaitStats { return p.WaitStats().Idle })
		if hook := p.Metrics.HandshakeHook(); hook != nil {
			c.OnHandshake = chain(c.OnHandshake, hook)
		}

		if obs := p.Metrics.HeaderObserver(); obs != nil {
			p.codec.Observer = ownPortObserver{obs, p}
		}
		if p.serverTLS, p.initErr = c.ServerTLS(); p.initErr != nil {
			return
		}
		if p.clientTLS, p.initErr = c.ClientTLS(); p.initErr != nil {
			return
		}
		p.race = p.Race
		if p.race == nil {
			p.race = &detect.RacePolicy{}
		}
		if p.race.Learner == nil {
			p.race = &detect.RacePolicy{Grace: p.race.Grace, MaxRaces: p.race.MaxRaces, Learner: &detect.Learner{}}
		}
		p.hsSem = make(chan struct{}, cmp.Or(p.MaxHandshakes, DefaultMaxHandshakes))
	})
	return p.initErr
}

func (p *Proxy) dialTimeout() time.Duration {
	if p.DialTimeout > 0 {
		return p.DialTimeout
	}
	return 10 * time.Second
}

func (p *Proxy) appHost() netip.Addr {
	if p.AppHost.IsValid() {
		return p.AppHost
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

func (p *Proxy) resolve(dir opaque.Direction, port uint16) opaque.Decision {
	dec := opaque.Decision{Action: opaque.ActionDetect}
	if p.Policy != nil {
		dec = p.Policy.Resolve(dir, port)
	}
	p.Metrics.ObservePolicy(dir, port, dec)
	return dec
}

// detector returns the proxy's detector for connections in dir: one per direction, built once
// and kept with its direction's metrics hook (whose cache lasts across connections). A port's
// detection timeout from the policy is an option of each call (see timeoutOf).
func (p *Proxy) detector(dir opaque.Direction) *detect.Detector {
	if dir != opaque.Outbound {
		dir = opaque.Inbound
	}
	p.detOnce.Do(func() {
		for d := range p.detectors {
			var det detect.Detector
			if p.Detector != nil {
				det = *p.Detector
			}
			if hook := p.Metrics.DetectHook(opaque.Direction(d)); hook != nil {
				det.OnResult = chain(det.OnResult, hook)
			}
			p.detectors[d] = &det
		}
	})
	return p.detectors[dir]
}

// timeoutOf is the detection timeout of a connection whose policy is d, as an option of the
// call: the policy's, or the detector's when the policy names none.
func timeoutOf(d opaque.Decision) detect.Option { return detect.WithTimeout(d.DetectTimeout) }

// detectTimeout is the detection timeout in effect for a connection in dir whose policy is d.
func (p *Proxy) detectTimeout(dir opaque.Direction, d opaque.Decision) time.Duration {
	if d.DetectTimeout != 0 {
		return d.DetectTimeout
	}
	if t := p.detector(dir).Timeout; t != 0 {
		return t
	}
	return detect.DefaultTimeout
}

func (p *Proxy) peer(dst netip.AddrPort) (Peer, error) {
	if p.Peers != nil {
		return p.Peers(dst)
	}
	port := p.InboundPort
	if port == 0 {
		port = opaque.DefaultInboundPort
	}
	return Peer{Addr: net.JoinHostPort(dst.Addr().String(), strconv.Itoa(int(port)))}, nil
}

func (p *Proxy) join(ctx context.Context, a, b net.Conn, obs splice.Observer) (splice.Stats, error) {
	j := p.Joiner
	if j == nil {
		j = &splice.Joiner{}
	}
	return j.Join(ctx, a, b, obs)
}

func (p *Proxy) emit(ev *Event) {
	if ev.joined {
		return
	}
	if ev.parked != nil {
		ev.parked.parkEvent(ev)
		return
	}
	if p.OnEvent != nil {
		p.OnEvent(*ev)
	}
}

// dialMesh opens mutual TLS to the peer sidecar, checks its identity and
// writes the transport header. It returns the TLS conn and the peer's identity.
func (p *Proxy) dialMesh(ctx context.Context, peer Peer, h opaque.Header) (*tls.Conn, spiffe.ID, error) {
	ctx, cancel := context.WithTimeout(ctx, p.dialTimeout())
	defer cancel()
	release, err := p.handshakeSlot(ctx)
	if err != nil {
		return nil, spiffe.ID{}, fmt.Errorf("sidecar: waiting for a handshake slot to %s: %w", peer.Addr, err)
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", peer.Addr)
	if err != nil {
		release()
		return nil, spiffe.ID{}, err
	}
	tc := tls.Client(raw, p.clientTLS)
	id, err := mtls.Handshake(ctx, tc)
	release()
	if err != nil {
		tc.Close()
		return nil, spiffe.ID{}, err
	}
	if !peer.ID.IsZero() && id != peer.ID {
		tc.Close()
		return nil, id, fmt.Errorf("%w: %s, want %s", ErrPeerIdentity, id, peer.ID)
	}
	if tc.ConnectionState().NegotiatedProtocol != opaque.ALPN {
		tc.Close()
		return nil, id, fmt.Errorf("sidecar: peer %s did not negotiate %s", peer.Addr, opaque.ALPN)
	}
	if _, err := p.codec.Write(tc, h); err != nil {
		tc.Close()
		return nil, id, err
	}
	return tc, id, nil
}

func (p *Proxy) dialPlain(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.dialTimeout())
	defer cancel()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// rejectProxyPort is the transport_header_rejected_total reason of a header
// that names one of the proxy's own listeners.
const rejectProxyPort = "proxy_port"

// ownPortObserver counts a header that names one of the proxy's own
// listeners as rejected (reason proxy_port), not as read: HandleInbound
// refuses it.
type ownPortObserver struct {
	opaque.HeaderObserver
	p *Proxy
}

func (o ownPortObserver) HeaderRead(h opaque.Header, n int) {
	if o.p.isOwnPort(h.Port) {
		o.p.Metrics.ObserveTransportHeader(metrics.HeaderRejected, rejectProxyPort)
		return
	}
	o.HeaderObserver.HeaderRead(h, n)
}

// chain calls a (when set) then b.
func chain[T any](a, b func(T)) func(T) {
	if a == nil {
		return b
	}
	return func(v T) { a(v); b(v) }
}

// MetricsHandler serves reg in the Prometheus text format (through
// metrics/prometheus and client_golang), for the admin listener's /metrics.
func MetricsHandler(reg *metrics.Registry) http.Handler {
	return promtext.Handler(reg)
}
