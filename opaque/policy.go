package opaque

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sniffsplice/sniff/detect"
)

// DefaultDetectTimeout is how long detection waits for the client's first bytes before the
// connection is treated as opaque, as in Linkerd.
const DefaultDetectTimeout = 10 * time.Second

// Direction says which side of the proxy a connection is on. It is the one direction type of the
// project: policy decisions, metrics labels and the examples' events use it.
type Direction uint8

const (
	// Inbound connections come from the network to the local workload.
	Inbound Direction = iota
	// Outbound connections go from the local workload to the network.
	Outbound
)

// String returns "inbound" or "outbound".
func (d Direction) String() string {
	switch d {
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// Action is what the proxy does with a connection to a port.
type Action uint8

const (
	// ActionDetect peeks at the first bytes to learn the protocol, waiting at most
	// Decision.DetectTimeout; on timeout the connection is opaque.
	ActionDetect Action = iota
	// ActionSkip bypasses the proxy: no mTLS, no metrics (Linkerd's skip ports, done with iptables
	// rules in a sidecar).
	ActionSkip
	// ActionOpaque proxies the connection as TCP bytes without detection, still with mTLS and byte
	// metrics.
	ActionOpaque
	// ActionDeclared serves Decision.Protocol without detection.
	ActionDeclared
)

// String returns "detect", "skip", "opaque" or "declared".
func (a Action) String() string {
	switch a {
	case ActionDetect:
		return "detect"
	case ActionSkip:
		return "skip"
	case ActionOpaque:
		return "opaque"
	case ActionDeclared:
		return "declared"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Decision is the policy for one port in one direction.
type Decision struct {
	Action Action
	// Protocol is the declared protocol when Action is ActionDeclared (detect.HTTP1, detect.HTTP2,
	// detect.GRPC or detect.TLS), else "".
	Protocol detect.Protocol
	// DetectTimeout is set when Action is ActionDetect (DefaultDetectTimeout unless a layer says
	// otherwise), else 0.
	DetectTimeout time.Duration
}

// String returns e.g. "detect 10s", "skip", "opaque" or "declared HTTP/2".
func (d Decision) String() string {
	switch d.Action {
	case ActionDetect:
		return "detect " + d.DetectTimeout.String()
	case ActionDeclared:
		return "declared " + string(d.Protocol)
	}
	return d.Action.String()
}

// Errors for protocol names and policies; test with errors.Is.
var (
	ErrUnknownProtocol = errors.New("unknown protocol")
	ErrConflict        = errors.New("conflicting policies for one port")
	ErrInvalidPolicy   = errors.New("invalid port policy")
)

// ParseProxyProtocol maps a Linkerd Server's proxyProtocol value to a decision: "unknown" detects,
// "HTTP/1", "HTTP/2", "gRPC" and "TLS" declare that protocol, "opaque" proxies opaque bytes. Case
// is ignored. The decision for "unknown" has DetectTimeout 0, which Compile fills in from the
// layers.
func ParseProxyProtocol(s string) (Decision, error) {
	switch {
	case strings.EqualFold(s, "unknown"):
		return Decision{Action: ActionDetect}, nil
	case strings.EqualFold(s, "opaque"):
		return Decision{Action: ActionOpaque}, nil
	case strings.EqualFold(s, "HTTP/1"):
		return Decision{Action: ActionDeclared, Protocol: detect.HTTP1}, nil
	case strings.EqualFold(s, "HTTP/2"):
		return Decision{Action: ActionDeclared, Protocol: detect.HTTP2}, nil
	case strings.EqualFold(s, "gRPC"):
		return Decision{Action: ActionDeclared, Protocol: detect.GRPC}, nil
	case strings.EqualFold(s, "TLS"):
		return Decision{Action: ActionDeclared, Protocol: detect.TLS}, nil
	}
	return Decision{}, &ProtocolError{Value: s}
}

// ParseAppProtocol maps a Kubernetes Service port's appProtocol to a decision the way Linkerd does:
// "http" declares HTTP/1, "kubernetes.io/h2c" declares HTTP/2, "linkerd.io/opaque" and
// "linkerd.io/tcp" are opaque. Case is ignored. Any other value (including "") is not understood by
// Linkerd: ok is false and the decision is to detect.
func ParseAppProtocol(s string) (d Decision, ok bool) {
	switch {
	case strings.EqualFold(s, "http"):
		return Decision{Action: ActionDeclared, Protocol: detect.HTTP1}, true
	case strings.EqualFold(s, "kubernetes.io/h2c"):
		return Decision{Action: ActionDeclared, Protocol: detect.HTTP2}, true
	case strings.EqualFold(s, "linkerd.io/opaque"), strings.EqualFold(s, "linkerd.io/tcp"):
		return Decision{Action: ActionOpaque}, true
	}
	return Decision{Action: ActionDetect}, false
}

// ProtocolError reports a proxyProtocol value that is not in Linkerd's vocabulary. It matches
// ErrUnknownProtocol with errors.Is.
type ProtocolError struct{ Value string }

// Error describes the problem, naming what was rejected.
func (e *ProtocolError) Error() string {
	return prefix + "unknown proxyProtocol " + strconv.Quote(e.Value) +
		` (want unknown, HTTP/1, HTTP/2, gRPC, opaque or TLS)`
}

// Is matches ErrUnknownProtocol.
func (e *ProtocolError) Is(target error) bool { return target == ErrUnknownProtocol }

// Layer is one level of configuration. Every field is optional: nil (or 0) inherits the value of
// the layer below, and a set value replaces it — a namespace's opaque ports are not added to the
// cluster's, they are the namespace's opaque ports.
type Layer struct {
	// OpaquePorts are proxied as opaque TCP without detection (Linkerd's
	// config.linkerd.io/opaque-ports; the built-in default is DefaultOpaquePorts). Like the
	// annotation, it is a property of the destination: a workload's opaque ports apply to
	// connections coming in to it (Policy.Workload, inbound) and a service's to connections going
	// out to it (Policy.Destination, outbound).
	OpaquePorts *PortSet
	// SkipInboundPorts bypass the proxy for inbound connections
	// (config.linkerd.io/skip-inbound-ports).
	SkipInboundPorts *PortSet
	// SkipOutboundPorts bypass the proxy for outbound connections
	// (config.linkerd.io/skip-outbound-ports). It is set on the source: the local workload.
	SkipOutboundPorts *PortSet
	// EnableExternalProfiles asks for service profiles of destinations outside the cluster
	// (config.linkerd.io/enable-external-profiles). The resolver does not use it; it is carried to
	// Table.ExternalProfiles.
	EnableExternalProfiles *bool
	// DetectTimeout for ports that detect; 0 inherits (built-in: 10 s).
	DetectTimeout time.Duration
}

// PortPolicy is an explicit decision for one port, like a Linkerd Server resource's proxyProtocol
// (inbound) or a Service port's appProtocol (outbound). It overrides every Layer.
type PortPolicy struct {
	Direction Direction // zero value: Inbound, as for a Server
	// Port selects the port; when 0, Name selects it through Policy.Lookup.
	Port uint16
	Name string
	// Decision for the port. ActionDetect with DetectTimeout 0 takes the layers' timeout.
	// ActionDeclared needs a Protocol.
	Decision Decision
}

// Policy is a stack of layers, most specific last: the built-in default (DefaultOpaquePorts, no
// skip ports, 10 s detection) < Cluster < Namespace < Workload (or Destination) < Ports. Compile it
// into a Table.
//
// Following Linkerd, opaque ports belong to the destination and skip-outbound ports to the source.
// With a Destination layer the directions stack differently:
//
//	inbound opaque ports    Cluster < Namespace < Workload
//	outbound opaque ports   Cluster < Namespace < *Destination
//	skip ports, timeout, external profiles   Cluster < Namespace < Workload
//
// A proxy that knows the service behind an outbound connection compiles a Table with that service's
// annotations as Destination (a Table per destination, or one for the common case); &Layer{} says
// "the destination sets nothing". A nil Destination means the proxy knows nothing about its
// destinations and one configuration describes both sides, so the local stack (Cluster < Namespace
// < Workload) gives the opaque ports of both directions.
type Policy struct {
	// Cluster is the install-wide default, e.g. Linkerd's proxy.opaquePorts and proxyInit skip
	// ports.
	Cluster Layer
	// Namespace is the namespace's annotations.
	Namespace Layer
	// Workload is the local workload's (pod's) annotations.
	Workload Layer
	// Destination is the outbound destination's (service's) annotations; nil: outbound uses the
	// same opaque ports as inbound (see above). Only its OpaquePorts is used; the other settings
	// are the source's.
	Destination *Layer
	// Ports are explicit per-port decisions (Server policy); they win over every layer. Two entries
	// for one port and direction must agree.
	Ports []PortPolicy
	// Lookup resolves PortPolicy.Name; nil: names are an error.
	Lookup PortLookup
}

// PolicyError reports a PortPolicy that Compile cannot use. It wraps ErrInvalidPolicy, ErrConflict
// or ErrUnknownName.
type PolicyError struct {
	Index int // index in Policy.Ports; -1 when no one entry is at fault (Port is then one that did not fit)
	Port  PortPolicy
	Err   error
}

// Error describes the problem, naming what was rejected.
func (e *PolicyError) Error() string {
	sel := strconv.Itoa(int(e.Port.Port))
	if e.Port.Port == 0 {
		sel = strconv.Quote(e.Port.Name)
	}
	return prefix + "Ports[" + strconv.Itoa(e.Index) + "] (" + e.Port.Direction.String() + " port " + sel + "): " +
		unprefixed(e.Err)
}

// Unwrap returns the kind of error.
func (e *PolicyError) Unwrap() error { return e.Err }

// Table is a compiled, immutable policy: for each direction and each of the 65,536 ports, the index
// of its Decision. Resolve is two loads. A Table is safe for concurrent use.
type Table struct {
	class     [2][1 << 16]uint8
	decisions [2][256]Decision // indexed by class: no bounds check
	ndec      [2]int           // decisions in use
	ok        bool             // built by Compile

	opaqueIn, opaqueOut PortSet
	skipIn, skipOut     PortSet
	external            bool
	timeout             time.Duration
}

// Resolve returns the decision for port in direction dir. An unknown direction gets detection with
// the table's timeout. A Table that did not come from Compile (the zero Table, or nil) answers as
// DefaultTable.
func (t *Table) Resolve(dir Direction, port uint16) Decision {
	if t != nil && t.ok && dir <= Outbound {
		return t.decisions[dir&1][t.class[dir&1][port]]
	}
	return t.fallback(dir, port)
}

// fallback answers for a nil or zero Table and for unknown directions.
func (t *Table) fallback(dir Direction, port uint16) Decision {
	t = t.compiled()
	if dir > Outbound {
		return Decision{Action: ActionDetect, DetectTimeout: t.timeout}
	}
	return t.Resolve(dir, port)
}

// compiled returns t, or DefaultTable for a nil or zero Table.
func (t *Table) compiled() *Table {
	if t == nil || !t.ok {
		return defaultTable()
	}
	return t
}

// OpaquePorts returns the effective opaque ports of the layers for dir (before per-port policies).
func (t *Table) OpaquePorts(dir Direction) PortSet {
	t = t.compiled()
	if dir == Outbound {
		return t.opaqueOut
	}
	return t.opaqueIn
}

// SkipPorts returns the effective skip ports for dir (before per-port policies). A sidecar's
// iptables setup uses these.
func (t *Table) SkipPorts(dir Direction) PortSet {
	t = t.compiled()
	if dir == Outbound {
		return t.skipOut
	}
	return t.skipIn
}

// ExternalProfiles reports the effective enable-external-profiles setting.
func (t *Table) ExternalProfiles() bool { return t.compiled().external }

// DetectTimeout returns the effective detection timeout.
func (t *Table) DetectTimeout() time.Duration { return t.compiled().timeout }

// Compile checks p and builds its Table. Errors are *PolicyError values. A Table holds at most 256
// distinct decisions per direction (detect with the default timeout, skip and opaque among them);
// a policy with more, such as 254 ports each with a timeout of its own, is refused with Index -1.
func Compile(p Policy) (*Table, error) {
	t := &Table{opaqueIn: DefaultOpaquePorts(), opaqueOut: DefaultOpaquePorts(), timeout: DefaultDetectTimeout}
	dst := p.Destination
	if dst == nil {
		dst = &p.Workload
	}
	for _, l := range [...]*Layer{&p.Cluster, &p.Namespace, dst} {
		if l.OpaquePorts != nil {
			t.opaqueOut = *l.OpaquePorts
		}
	}
	for _, l := range [...]*Layer{&p.Cluster, &p.Namespace, &p.Workload} {
		if l.OpaquePorts != nil {
			t.opaqueIn = *l.OpaquePorts
		}
		if l.SkipInboundPorts != nil {
			t.skipIn = *l.SkipInboundPorts
		}
		if l.SkipOutboundPorts != nil {
			t.skipOut = *l.SkipOutboundPorts
		}
		if l.EnableExternalProfiles != nil {
			t.external = *l.EnableExternalProfiles
		}
		if l.DetectTimeout > 0 {
			t.timeout = l.DetectTimeout
		}
	}

	// Explicit per-port decisions, checked for conflicts.
	type key struct {
		dir  Direction
		port uint16
	}
	explicit := make(map[key]Decision, len(p.Ports))
	for i, pp := range p.Ports {
		fail := func(err error) (*Table, error) { return nil, &PolicyError{Index: i, Port: pp, Err: err} }
		if pp.Direction > Outbound {
			return fail(invalid("unknown direction"))
		}
		port := pp.Port
		if port == 0 {
			if pp.Name == "" {
				return fail(invalid("neither a port number nor a name"))
			}
			var ok bool
			if p.Lookup != nil {
				port, ok = p.Lookup(pp.Name)
			}
			if !ok || port == 0 {
				return fail(ErrUnknownName)
			}
		}
		d, err := t.normalize(pp.Decision)
		if err != nil {
			return fail(err)
		}
		k := key{pp.Direction, port}
		if prev, dup := explicit[k]; dup && prev != d {
			return fail(fmt.Errorf("%w: already %s, now %s", ErrConflict, prev, d))
		}
		explicit[k] = d
	}

	detectD := Decision{Action: ActionDetect, DetectTimeout: t.timeout}
	for dir := Inbound; dir <= Outbound; dir++ {
		index := map[Decision]uint8{}
		add := func(d Decision) (uint8, bool) {
			if c, ok := index[d]; ok {
				return c, true
			}
			if t.ndec[dir] == len(t.decisions[dir]) {
				return 0, false
			}
			c := uint8(t.ndec[dir])
			index[d] = c
			t.decisions[dir][c] = d
			t.ndec[dir]++
			return c, true
		}
		add(detectD) // class 0: the zeroed class array already says detect
		cSkip, _ := add(Decision{Action: ActionSkip})
		cOpaque, _ := add(Decision{Action: ActionOpaque})
		skip, opaque := t.skipIn, t.opaqueIn
		if dir == Outbound {
			skip, opaque = t.skipOut, t.opaqueOut
		}
		// Walk only the 64-port words that hold a skip or opaque port; skip wins over opaque.
		for w := range numWords {
			sw, ow := skip.word(w), opaque.word(w)
			for m := sw | ow; m != 0; m &= m - 1 {
				bit := uint(bits.TrailingZeros64(m))
				c := cOpaque
				if sw&(1<<bit) != 0 {
					c = cSkip
				}
				t.class[dir][w<<6|int(bit)] = c
			}
		}
		for k, d := range explicit {
			if k.dir != dir {
				continue
			}
			c, ok := add(d)
			if !ok {
				return nil, &PolicyError{Index: -1, Port: PortPolicy{Direction: dir, Port: k.port, Decision: d},
					Err: invalid("more than 256 distinct decisions")}
			}
			t.class[dir][k.port] = c
		}
	}
	t.ok = true
	return t, nil
}

// invalid returns ErrInvalidPolicy with a detail, on one line.
func invalid(detail string) error { return fmt.Errorf("%w: %s", ErrInvalidPolicy, detail) }

// normalize fills in the detection timeout and checks d.
func (t *Table) normalize(d Decision) (Decision, error) {
	switch d.Action {
	case ActionDetect:
		if d.Protocol != "" {
			return d, invalid("detect with a protocol")
		}
		if d.DetectTimeout < 0 {
			return d, invalid("negative detect timeout")
		}
		if d.DetectTimeout == 0 {
			d.DetectTimeout = t.timeout
		}
	case ActionSkip, ActionOpaque:
		if d.Protocol != "" || d.DetectTimeout != 0 {
			return d, invalid(d.Action.String() + " with a protocol or timeout")
		}
	case ActionDeclared:
		if d.Protocol == "" || d.Protocol == detect.Unknown {
			return d, invalid("declared without a protocol")
		}
		if d.DetectTimeout != 0 {
			return d, invalid("declared with a detect timeout")
		}
	default:
		return d, invalid("unknown action " + d.Action.String())
	}
	return d, nil
}

// defaultTable is the compiled zero Policy, built on first use and never changed afterwards.
var defaultTable = sync.OnceValue(func() *Table {
	t, err := Compile(Policy{})
	if err != nil {
		panic("opaque: the built-in policy does not compile: " + err.Error())
	}
	return t
})

// DefaultTable returns the compiled built-in policy: DefaultOpaquePorts are opaque in both
// directions, every other port detects with a 10 s timeout.
func DefaultTable() *Table { return defaultTable() }

// Resolver answers "what do I do with a connection to port P" from a Table that can be replaced at
// any time. Resolve takes no lock and does not allocate: it loads the current Table with one atomic
// read. Store swaps in a new Table atomically while Resolve calls run; each call sees either the
// old or the new Table, never a mix. The zero value resolves with DefaultTable.
type Resolver struct {
	t atomic.Pointer[Table]
}

// NewResolver returns a Resolver that starts with t (nil: DefaultTable).
func NewResolver(t *Table) *Resolver {
	r := new(Resolver)
	r.Store(t)
	return r
}

// Resolve returns the decision for port in direction dir.
func (r *Resolver) Resolve(dir Direction, port uint16) Decision {
	t := r.t.Load()
	if t == nil {
		t = r.init()
	}
	return t.Resolve(dir, port)
}

// init installs DefaultTable in a zero Resolver on first use, unless a Store got there first.
func (r *Resolver) init() *Table {
	r.t.CompareAndSwap(nil, defaultTable())
	return r.t.Load()
}

// Store makes t the current Table (nil: DefaultTable).
func (r *Resolver) Store(t *Table) {
	if t == nil {
		t = defaultTable()
	}
	r.t.Store(t)
}

// Load returns the current Table, never nil.
func (r *Resolver) Load() *Table {
	if t := r.t.Load(); t != nil {
		return t
	}
	return r.init()
}

// Update compiles p and stores the result; on error the current Table stays.
func (r *Resolver) Update(p Policy) error {
	t, err := Compile(p)
	if err != nil {
		return err
	}
	r.Store(t)
	return nil
}
