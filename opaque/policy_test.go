package opaque

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
)

var (
	detect10s = Decision{Action: ActionDetect, DetectTimeout: DefaultDetectTimeout}
	skipD     = Decision{Action: ActionSkip}
	opaqueD   = Decision{Action: ActionOpaque}
)

func declared(p detect.Protocol) Decision { return Decision{Action: ActionDeclared, Protocol: p} }

func TestZeroResolverUsesBuiltInDefaults(t *testing.T) {
	bound(t)
	var r Resolver
	for _, dir := range []Direction{Inbound, Outbound} {
		for port := range DefaultOpaquePorts().All() {
			assert.Equal(t, opaqueD, r.Resolve(dir, port), "%v %d", dir, port)
		}
		for _, port := range []uint16{0, 1, 80, 443, 8080, 65535} {
			assert.Equal(t, detect10s, r.Resolve(dir, port), "%v %d", dir, port)
		}
	}
	assert.Same(t, DefaultTable(), r.Load())
	assert.False(t, r.Load().ExternalProfiles())
	assert.Equal(t, DefaultDetectTimeout, r.Load().DetectTimeout())
	assert.Equal(t, Decision{Action: ActionDetect, DetectTimeout: DefaultDetectTimeout}, r.Resolve(Direction(7), 80))
}

// TestZeroResolverFirstUse: a zero Resolver's first Load returns DefaultTable
// (never nil), and its first Resolve installs DefaultTable, so that later calls
// take the one-load path instead of falling back through a nil Table on every
// call; a Store before either wins over the default.
func TestZeroResolverFirstUse(t *testing.T) {
	bound(t)
	var r1 Resolver
	assert.Same(t, DefaultTable(), r1.Load())
	assert.Same(t, DefaultTable(), r1.t.Load(), "Load installs the default")

	var r2 Resolver
	assert.Nil(t, r2.t.Load())
	assert.Equal(t, opaqueD, r2.Resolve(Inbound, 3306))
	assert.Same(t, DefaultTable(), r2.t.Load(), "Resolve installs the default")
	assert.Equal(t, detect10s, r2.Resolve(Outbound, 80))

	tb, err := Compile(Policy{Workload: Layer{OpaquePorts: new(NewPortSet(80))}})
	require.NoError(t, err)
	var r3 Resolver
	r3.Store(tb)
	assert.Same(t, tb, r3.Load())
	assert.Equal(t, opaqueD, r3.Resolve(Inbound, 80))
	assert.Equal(t, detect10s, r3.Resolve(Inbound, 3306))
	r3.Store(nil)
	assert.Same(t, DefaultTable(), r3.Load())
	assert.Same(t, DefaultTable(), NewResolver(nil).Load())
	assert.Same(t, tb, NewResolver(tb).Load())
}

// TestLayering checks that each layer overrides the one below, field by
// field, and that a set value replaces the lower one instead of merging.
func TestLayering(t *testing.T) {
	bound(t)
	set := func(s string) *PortSet { p := MustParsePortSet(s); return &p }
	yes, no := true, false

	cases := []struct {
		name   string
		p      Policy
		expect map[Direction]map[uint16]Decision
		check  func(t *testing.T, tb *Table)
	}{
		{
			name: "cluster replaces the built-in opaque list",
			p:    Policy{Cluster: Layer{OpaquePorts: set("4567-4568")}},
			expect: map[Direction]map[uint16]Decision{
				Inbound:  {3306: detect10s, 4567: opaqueD, 4568: opaqueD, 25: detect10s},
				Outbound: {3306: detect10s, 4567: opaqueD},
			},
		},
		{
			name: "namespace replaces cluster, not merges",
			p: Policy{
				Cluster:   Layer{OpaquePorts: set("1000"), SkipInboundPorts: set("22")},
				Namespace: Layer{OpaquePorts: set("2000")},
			},
			expect: map[Direction]map[uint16]Decision{
				Inbound:  {1000: detect10s, 2000: opaqueD, 22: skipD, 3306: detect10s},
				Outbound: {1000: detect10s, 2000: opaqueD, 22: detect10s},
			},
		},
		{
			name: "workload replaces namespace; unset fields inherit",
			p: Policy{
				Cluster:   Layer{SkipOutboundPorts: set("9000")},
				Namespace: Layer{OpaquePorts: set("2000"), SkipInboundPorts: set("22")},
				Workload:  Layer{OpaquePorts: set("3000")},
			},
			expect: map[Direction]map[uint16]Decision{
				Inbound:  {2000: detect10s, 3000: opaqueD, 22: skipD, 9000: detect10s},
				Outbound: {2000: detect10s, 3000: opaqueD, 22: detect10s, 9000: skipD}, // no Destination: one configuration for both sides
			},
		},
		{
			name: "an empty set is a value: it removes the defaults",
			p:    Policy{Namespace: Layer{OpaquePorts: set("")}},
			expect: map[Direction]map[uint16]Decision{
				Inbound:  {3306: detect10s, 25: detect10s},
				Outbound: {11211: detect10s},
			},
		},
		{
			name: "extending the default is explicit (Union)",
			p:    Policy{Workload: Layer{OpaquePorts: new(DefaultOpaquePorts().Union(NewPortSet(7000)))}},
			expect: map[Direction]map[uint16]Decision{
				Inbound: {3306: opaqueD, 7000: opaqueD, 80: detect10s},
			},
		},
		{
			name: "skip wins over opaque within the layers",
			p:    Policy{Workload: Layer{SkipInboundPorts: set("3306")}},
			expect: map[Direction]map[uint16]Decision{
				Inbound:  {3306: skipD},
				Outbound: {3306: opaqueD},
			},
		},
		{
			name: "explicit per-port policy wins over every layer",
			p: Policy{
				Workload: Layer{SkipInboundPorts: set("8443"), OpaquePorts: set("8080,9090")},
				Ports: []PortPolicy{
					{Port: 8080, Decision: declared(detect.HTTP1)},
					{Port: 8443, Decision: declared(detect.TLS)},
					{Port: 9090, Decision: Decision{Action: ActionDetect}},
					{Port: 50051, Decision: declared(detect.GRPC)},
					{Port: 50051, Direction: Outbound, Decision: opaqueD},
				},
			},
			expect: map[Direction]map[uint16]Decision{
				Inbound: {
					8080: declared(detect.HTTP1), 8443: declared(detect.TLS),
					9090: detect10s, 50051: declared(detect.GRPC),
				},
				Outbound: {8080: opaqueD, 8443: detect10s, 9090: opaqueD, 50051: opaqueD},
			},
		},
		{
			name: "opaque ports belong to the destination, skip-outbound to the source",
			p: Policy{
				Namespace:   Layer{OpaquePorts: set("5000")},
				Workload:    Layer{OpaquePorts: set("7000"), SkipOutboundPorts: set("443")},
				Destination: &Layer{OpaquePorts: set("8000"), SkipOutboundPorts: set("9000"), SkipInboundPorts: set("9001")},
			},
			expect: map[Direction]map[uint16]Decision{
				Inbound:  {7000: opaqueD, 8000: detect10s, 5000: detect10s, 9001: detect10s, 3306: detect10s},
				Outbound: {8000: opaqueD, 7000: detect10s, 5000: detect10s, 3306: detect10s, 443: skipD, 9000: detect10s},
			},
			check: func(t *testing.T, tb *Table) {
				assert.Equal(t, "7000", tb.OpaquePorts(Inbound).String())
				assert.Equal(t, "8000", tb.OpaquePorts(Outbound).String())
			},
		},
		{
			name: "an empty destination layer: outbound opaque ports come from namespace and cluster",
			p: Policy{
				Cluster:     Layer{OpaquePorts: set("6000")},
				Workload:    Layer{OpaquePorts: set("7000")},
				Destination: &Layer{},
			},
			expect: map[Direction]map[uint16]Decision{
				Inbound:  {7000: opaqueD, 6000: detect10s},
				Outbound: {6000: opaqueD, 7000: detect10s},
			},
		},
		{
			name: "detect timeout layers and per-port timeouts",
			p: Policy{
				Cluster:   Layer{DetectTimeout: 5 * time.Second},
				Namespace: Layer{DetectTimeout: time.Second},
				Ports:     []PortPolicy{{Port: 81, Decision: Decision{Action: ActionDetect, DetectTimeout: 300 * time.Millisecond}}},
			},
			expect: map[Direction]map[uint16]Decision{
				Inbound: {
					80: {Action: ActionDetect, DetectTimeout: time.Second},
					81: {Action: ActionDetect, DetectTimeout: 300 * time.Millisecond},
				},
			},
		},
		{
			name: "external profiles: later layer replaces",
			p:    Policy{Cluster: Layer{EnableExternalProfiles: &yes}, Workload: Layer{EnableExternalProfiles: &no}},
			check: func(t *testing.T, tb *Table) {
				assert.False(t, tb.ExternalProfiles())
			},
		},
		{
			name: "external profiles: inherited",
			p:    Policy{Namespace: Layer{EnableExternalProfiles: &yes}, Workload: Layer{OpaquePorts: set("1")}},
			check: func(t *testing.T, tb *Table) {
				assert.True(t, tb.ExternalProfiles())
				assert.Equal(t, "1", tb.OpaquePorts(Inbound).String())
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb, err := Compile(c.p)
			require.NoError(t, err)
			for dir, ports := range c.expect {
				for port, want := range ports {
					assert.Equal(t, want, tb.Resolve(dir, port), "%v port %d", dir, port)
				}
			}
			if c.check != nil {
				c.check(t, tb)
			}
		})
	}
}

func TestNamedPorts(t *testing.T) {
	bound(t)
	ports := map[string]uint16{"http": 8080, "admin-http": 9990, "mysql": 3307}
	lookup := func(n string) (uint16, bool) { p, ok := ports[n]; return p, ok }

	// Names in annotations.
	l, err := LayerFromAnnotations(map[string]string{
		AnnotationOpaquePorts:      "mysql, 5000-5001",
		AnnotationSkipInboundPorts: "admin-http",
	}, lookup)
	require.NoError(t, err)
	// Names in per-port policies.
	tb, err := Compile(Policy{
		Workload: l,
		Ports:    []PortPolicy{{Name: "http", Decision: declared(detect.HTTP2)}},
		Lookup:   lookup,
	})
	require.NoError(t, err)
	assert.Equal(t, opaqueD, tb.Resolve(Inbound, 3307))
	assert.Equal(t, opaqueD, tb.Resolve(Inbound, 5001))
	assert.Equal(t, skipD, tb.Resolve(Inbound, 9990))
	assert.Equal(t, declared(detect.HTTP2), tb.Resolve(Inbound, 8080))
	assert.Equal(t, detect10s, tb.Resolve(Inbound, 3306), "the workload list replaced the default")

	// Unknown names are errors that name the item / the policy.
	_, err = LayerFromAnnotations(map[string]string{AnnotationOpaquePorts: "mysql,redis"}, lookup)
	assert.ErrorIs(t, err, ErrUnknownName)
	var ae *AnnotationError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, AnnotationOpaquePorts, ae.Key)
	var pe *PortListError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "redis", pe.Item)

	_, err = Compile(Policy{Ports: []PortPolicy{{Name: "grpc", Decision: opaqueD}}, Lookup: lookup})
	assert.ErrorIs(t, err, ErrUnknownName)
	var poe *PolicyError
	require.ErrorAs(t, err, &poe)
	assert.Equal(t, 0, poe.Index)
	assert.Contains(t, err.Error(), `"grpc"`)

	_, err = Compile(Policy{Ports: []PortPolicy{{Name: "http", Decision: opaqueD}}}) // no lookup
	assert.ErrorIs(t, err, ErrUnknownName)
}

func TestCompileErrors(t *testing.T) {
	bound(t)
	cases := []struct {
		name string
		pp   []PortPolicy
		kind error
	}{
		{"no port or name", []PortPolicy{{Decision: opaqueD}}, ErrInvalidPolicy},
		{"declared without protocol", []PortPolicy{{Port: 80, Decision: Decision{Action: ActionDeclared}}}, ErrInvalidPolicy},
		{"declared unknown", []PortPolicy{{Port: 80, Decision: declared(detect.Unknown)}}, ErrInvalidPolicy},
		{"detect with protocol", []PortPolicy{{Port: 80, Decision: Decision{Action: ActionDetect, Protocol: detect.HTTP1}}}, ErrInvalidPolicy},
		{"negative timeout", []PortPolicy{{Port: 80, Decision: Decision{Action: ActionDetect, DetectTimeout: -1}}}, ErrInvalidPolicy},
		{"opaque with timeout", []PortPolicy{{Port: 80, Decision: Decision{Action: ActionOpaque, DetectTimeout: 1}}}, ErrInvalidPolicy},
		{"unknown action", []PortPolicy{{Port: 80, Decision: Decision{Action: 9}}}, ErrInvalidPolicy},
		{"unknown direction", []PortPolicy{{Port: 80, Direction: 2, Decision: opaqueD}}, ErrInvalidPolicy},
		{"conflict", []PortPolicy{{Port: 80, Decision: opaqueD}, {Port: 80, Decision: declared(detect.HTTP1)}}, ErrConflict},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb, err := Compile(Policy{Ports: c.pp})
			assert.Nil(t, tb)
			assert.ErrorIs(t, err, c.kind)
			var pe *PolicyError
			assert.ErrorAs(t, err, &pe)
		})
	}
	// The same decision twice is not a conflict; a detect with the default
	// timeout spelled out equals one without.
	_, err := Compile(Policy{Ports: []PortPolicy{
		{Port: 80, Decision: opaqueD}, {Port: 80, Decision: opaqueD},
		{Port: 81, Decision: Decision{Action: ActionDetect}}, {Port: 81, Decision: detect10s},
	}})
	assert.NoError(t, err)
}

func TestCompileManyDistinctDecisions(t *testing.T) {
	bound(t)
	var pp []PortPolicy
	for i := range 253 { // + detect, skip, opaque = 256 classes
		pp = append(pp, PortPolicy{Port: uint16(1000 + i), Decision: Decision{Action: ActionDetect, DetectTimeout: time.Duration(i+1) * time.Millisecond}})
	}
	tb, err := Compile(Policy{Ports: pp})
	require.NoError(t, err)
	assert.Equal(t, 253*time.Millisecond, tb.Resolve(Inbound, 1252).DetectTimeout)
	pp = append(pp, PortPolicy{Port: 2000, Decision: Decision{Action: ActionDetect, DetectTimeout: time.Hour}})
	_, err = Compile(Policy{Ports: pp})
	assert.ErrorIs(t, err, ErrInvalidPolicy)
}

func TestParseProxyProtocol(t *testing.T) {
	bound(t)
	cases := map[string]Decision{
		"unknown": {Action: ActionDetect},
		"HTTP/1":  declared(detect.HTTP1),
		"HTTP/2":  declared(detect.HTTP2),
		"gRPC":    declared(detect.GRPC),
		"opaque":  opaqueD,
		"TLS":     declared(detect.TLS),
		"grpc":    declared(detect.GRPC), // case ignored
		"http/1":  declared(detect.HTTP1),
	}
	for in, want := range cases {
		got, err := ParseProxyProtocol(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "HTTP", "HTTP/3", "tcp", "opaque "} {
		_, err := ParseProxyProtocol(bad)
		assert.ErrorIs(t, err, ErrUnknownProtocol, bad)
		var pe *ProtocolError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, bad, pe.Value)
	}
	// A Server's proxyProtocol compiles into a per-port policy.
	d, err := ParseProxyProtocol("unknown")
	require.NoError(t, err)
	tb, err := Compile(Policy{Ports: []PortPolicy{{Port: 3306, Decision: d}}})
	require.NoError(t, err)
	assert.Equal(t, detect10s, tb.Resolve(Inbound, 3306), "proxyProtocol unknown on a default opaque port detects")
}

func TestParseAppProtocol(t *testing.T) {
	bound(t)
	cases := map[string]Decision{
		"http":              declared(detect.HTTP1),
		"HTTP":              declared(detect.HTTP1),
		"kubernetes.io/h2c": declared(detect.HTTP2),
		"linkerd.io/opaque": opaqueD,
		"linkerd.io/tcp":    opaqueD,
	}
	for in, want := range cases {
		got, ok := ParseAppProtocol(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, other := range []string{"", "https", "kubernetes.io/ws", "grpc", "XMPP"} {
		got, ok := ParseAppProtocol(other)
		assert.False(t, ok, other)
		assert.Equal(t, ActionDetect, got.Action)
	}
}

func TestStrings(t *testing.T) {
	bound(t)
	assert.Equal(t, "inbound", Inbound.String())
	assert.Equal(t, "outbound", Outbound.String())
	assert.Equal(t, "Direction(5)", Direction(5).String())
	assert.Equal(t, []string{"detect", "skip", "opaque", "declared", "Action(4)"},
		[]string{ActionDetect.String(), ActionSkip.String(), ActionOpaque.String(), ActionDeclared.String(), Action(4).String()})
	assert.Equal(t, "detect 10s", detect10s.String())
	assert.Equal(t, "declared gRPC", declared(detect.GRPC).String())
	assert.Equal(t, "skip", skipD.String())
}

// TestResolverHotSwap stores new tables while readers resolve, under -race.
// Every answer must come from exactly one of the two tables: port A and port
// B are read from one snapshot, and the two policies disagree on both, so a
// torn read would show as a mixed pair.
func TestResolverHotSwap(t *testing.T) {
	bound(t)
	tA, err := Compile(Policy{Workload: Layer{OpaquePorts: new(NewPortSet(1000)), SkipInboundPorts: new(NewPortSet(2000))}})
	require.NoError(t, err)
	tB, err := Compile(Policy{Workload: Layer{OpaquePorts: new(NewPortSet(2000)), SkipInboundPorts: new(NewPortSet(1000))}})
	require.NoError(t, err)

	var r Resolver // zero value: default table until the first Store
	assert.Equal(t, detect10s, r.Resolve(Inbound, 1000))

	const readers = 3
	var stop atomic.Bool
	var seenA, seenB atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() && i < 5_000_000; i++ {
				tb := r.Load()
				a, b := tb.Resolve(Inbound, 1000), tb.Resolve(Inbound, 2000)
				switch {
				case a == opaqueD && b == skipD:
					seenA.Add(1)
				case a == skipD && b == opaqueD:
					seenB.Add(1)
				case a == detect10s && b == detect10s: // before the first Store
				default:
					errs <- errors.New("mixed answers: " + a.String() + " / " + b.String())
					return
				}
				if i%256 == 0 {
					runtime.Gosched() // let the writer run on a busy 2-core machine
				}
				// The one-call path too.
				if d := r.Resolve(Inbound, 1000); d != opaqueD && d != skipD && d != detect10s {
					errs <- errors.New("unexpected " + d.String())
					return
				}
			}
		}()
	}
	// Swap back and forth, pausing so that readers see both tables; every
	// 50th swap to B goes through Update (a Compile while readers run).
	polB := Policy{Workload: Layer{OpaquePorts: new(NewPortSet(2000)), SkipInboundPorts: new(NewPortSet(1000))}}
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline) && i < 100_000; i++ {
		r.Store(tA)
		time.Sleep(20 * time.Microsecond)
		if i%50 == 0 {
			require.NoError(t, r.Update(polB))
		} else {
			r.Store(tB)
		}
		time.Sleep(20 * time.Microsecond)
		if i >= 100 && seenA.Load() > 0 && seenB.Load() > 0 {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Positive(t, seenA.Load(), "readers saw table A")
	assert.Positive(t, seenB.Load(), "readers saw table B")

	// A failed Update keeps the current table; Store(nil) goes back to the
	// defaults.
	r.Store(tB)
	err = r.Update(Policy{Ports: []PortPolicy{{Decision: opaqueD}}})
	assert.ErrorIs(t, err, ErrInvalidPolicy)
	assert.Same(t, tB, r.Load())
	r.Store(nil)
	assert.Same(t, DefaultTable(), r.Load())
	assert.Same(t, tA, NewResolver(tA).Load())
}

func TestResolveDoesNotAllocate(t *testing.T) {
	bound(t)
	r := NewResolver(nil)
	var zero Resolver
	n := testing.AllocsPerRun(1000, func() {
		_ = r.Resolve(Inbound, 3306)
		_ = zero.Resolve(Outbound, 80)
		_ = DefaultOpaquePorts().Contains(6379)
	})
	assert.Zero(t, n)
}

func TestTableAccessors(t *testing.T) {
	bound(t)
	tb, err := Compile(Policy{Cluster: Layer{SkipInboundPorts: new(MustParsePortSet("22")), SkipOutboundPorts: new(MustParsePortSet("25"))}})
	require.NoError(t, err)
	assert.Equal(t, "22", tb.SkipPorts(Inbound).String())
	assert.Equal(t, "25", tb.SkipPorts(Outbound).String())
	assert.Equal(t, DefaultOpaquePorts().String(), tb.OpaquePorts(Inbound).String())
	assert.Equal(t, DefaultOpaquePorts().String(), tb.OpaquePorts(Outbound).String())
}

func TestZeroAndNilTable(t *testing.T) {
	bound(t)
	var zero Table
	var nilT *Table
	for _, tb := range []*Table{&zero, nilT} {
		assert.Equal(t, opaqueD, tb.Resolve(Inbound, 3306))
		assert.Equal(t, detect10s, tb.Resolve(Outbound, 80))
		assert.Equal(t, detect10s, tb.Resolve(Direction(9), 3306))
		assert.Equal(t, DefaultOpaquePorts().String(), tb.OpaquePorts(Outbound).String())
		assert.True(t, tb.SkipPorts(Inbound).IsEmpty())
		assert.Equal(t, DefaultDetectTimeout, tb.DetectTimeout())
		assert.False(t, tb.ExternalProfiles())
	}
	r := NewResolver(&zero)
	assert.Equal(t, opaqueD, r.Resolve(Outbound, 6379))
}

// TestCompileMatchesReference compiles random policies and checks every port
// in both directions against a direct reading of the rules.
func TestCompileMatchesReference(t *testing.T) {
	bound(t)
	r := rand.New(rand.NewPCG(5, 6))
	randSet := func() *PortSet {
		if r.IntN(4) == 0 {
			return nil
		}
		var ports []uint16
		for range r.IntN(40) {
			ports = append(ports, uint16(r.IntN(65536)))
		}
		lo := uint16(r.IntN(65536))
		s := NewPortSet(ports...).Union(PortRange(lo, lo+uint16(r.IntN(300))))
		return &s
	}
	randLayer := func() Layer {
		return Layer{OpaquePorts: randSet(), SkipInboundPorts: randSet(), SkipOutboundPorts: randSet()}
	}
	for range 30 {
		p := Policy{Cluster: randLayer(), Namespace: randLayer(), Workload: randLayer()}
		if r.IntN(2) == 0 {
			d := randLayer()
			p.Destination = &d
		}
		explicit := map[[2]int]Decision{}
		for range r.IntN(10) {
			dir, port := Direction(r.IntN(2)), uint16(1+r.IntN(65535))
			d := []Decision{opaqueD, skipD, declared(detect.HTTP2), detect10s}[r.IntN(4)]
			if _, dup := explicit[[2]int{int(dir), int(port)}]; dup {
				continue
			}
			explicit[[2]int{int(dir), int(port)}] = d
			p.Ports = append(p.Ports, PortPolicy{Direction: dir, Port: port, Decision: d})
		}
		tb, err := Compile(p)
		require.NoError(t, err)

		last := func(def PortSet, ls ...*Layer) PortSet {
			for _, l := range ls {
				if l.OpaquePorts != nil {
					def = *l.OpaquePorts
				}
			}
			return def
		}
		lastSkip := func(dir Direction) PortSet {
			var s PortSet
			for _, l := range []*Layer{&p.Cluster, &p.Namespace, &p.Workload} {
				f := l.SkipInboundPorts
				if dir == Outbound {
					f = l.SkipOutboundPorts
				}
				if f != nil {
					s = *f
				}
			}
			return s
		}
		dst := p.Destination
		if dst == nil {
			dst = &p.Workload
		}
		opq := map[Direction]PortSet{
			Inbound:  last(DefaultOpaquePorts(), &p.Cluster, &p.Namespace, &p.Workload),
			Outbound: last(DefaultOpaquePorts(), &p.Cluster, &p.Namespace, dst),
		}
		for _, dir := range []Direction{Inbound, Outbound} {
			skip := lastSkip(dir)
			for port := range 65536 {
				want := detect10s
				if d, ok := explicit[[2]int{int(dir), port}]; ok {
					want = d
				} else if skip.Contains(uint16(port)) {
					want = skipD
				} else if opq[dir].Contains(uint16(port)) {
					want = opaqueD
				}
				if got := tb.Resolve(dir, uint16(port)); got != want {
					t.Fatalf("%v port %d: got %v, want %v", dir, port, got, want)
				}
			}
		}
	}
}
