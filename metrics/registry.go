package metrics

import (
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sniffsplice/sniff/opaque"
)

// norm maps any direction other than opaque.Outbound to opaque.Inbound, so that a label takes two
// values only.
func norm(d opaque.Direction) opaque.Direction {
	if d != opaque.Outbound {
		return opaque.Inbound
	}
	return d
}

// TLSStatus is the value of the tls label of connection metrics.
type TLSStatus uint8

const (
	// TLSFalse: plaintext, the proxy neither terminated nor saw TLS ("false").
	TLSFalse TLSStatus = iota
	// TLSTrue: the proxy terminated or originated (m)TLS on this connection ("true").
	TLSTrue
	// TLSOpaque: the connection carries the application's own TLS, which the proxy forwards without
	// terminating it ("opaque").
	TLSOpaque
)

// String returns "false", "true" or "opaque" (the label value).
func (t TLSStatus) String() string {
	switch t {
	case TLSTrue:
		return "true"
	case TLSOpaque:
		return "opaque"
	}
	return "false"
}

// Other is the label value that stands for every value beyond a cap or outside a declared set.
const Other = "other"

// Defaults for the caps of Config.
const (
	DefaultMaxLabelValues    = 32
	DefaultMaxPeerIdentities = 100
)

// Config configures a Registry. The zero value is useful: no port gets its own label value, peer
// identities are not recorded and free-form label values (protocols, errnos, reasons, actions) are
// capped at DefaultMaxLabelValues each.
type Config struct {
	// Ports is the declared set of ports that appear by number in the port label of policy
	// decisions; every other port is counted as "other".
	Ports opaque.PortSet

	// PeerIdentities turns on the peer_identity label of mTLS handshakes. Identities are
	// high-cardinality, so it is off by default.
	PeerIdentities bool
	// MaxPeerIdentities caps the distinct peer identities recorded; later ones are counted as
	// "other". 0 means DefaultMaxPeerIdentities.
	MaxPeerIdentities int

	// MaxLabelValues caps the distinct values of each free-form label (protocol, errno, detection
	// reason, policy action, handshake outcome, transport-header reason); values beyond the cap are
	// counted as "other". 0 means DefaultMaxLabelValues.
	MaxLabelValues int
}

// Registry holds every counter of this package. The zero value is ready to use with a zero Config;
// New sets a Config. A nil *Registry is valid too: every method is then a no-op, so "metrics off"
// costs a nil check.
//
// All methods are safe for concurrent use. Counter updates do not allocate; the first use of a new
// label combination does (once).
type Registry struct {
	cfg Config

	// Per-connection families: copy-on-write slices scanned linearly (a handful of entries; faster
	// than hashing string keys).
	tcp        family[ConnLabels, tcpSeries]
	detect     family[detectKey, histSeries]
	decisions  family[decisionKey, counter]
	handshakes family[handshakeKey, handshakeSeries]
	headers    family[headerKey, counter]
	mux        family[muxKey, counter]
	// Per-request families.
	httpReqs  cowMap[httpReqKey, counter]
	httpResps cowMap[httpRespKey, histSeries]

	protocols cappedSet // tcp + detect protocol label
	errnos    errnoTable
	reasons   cappedSet // detection reasons
	actions   cappedSet // policy actions
	outcomes  cappedSet // handshake outcomes
	hdrValues cappedSet // transport header reasons and session protocols
	muxOut    cappedSet // mux outcomes
	peerIDs   cappedSet

	waitMu  sync.Mutex
	waiters []waiterSource // AddWaiter
}

// New returns a Registry with the given configuration.
func New(cfg Config) *Registry {
	return &Registry{cfg: cfg}
}

func (r *Registry) maxValues() int {
	if r.cfg.MaxLabelValues > 0 {
		return r.cfg.MaxLabelValues
	}
	return DefaultMaxLabelValues
}

// declaredPort returns port when it is in the declared set, else 0.
func (r *Registry) declaredPort(port uint16) uint16 {
	if r.cfg.Ports.Contains(port) {
		return port
	}
	return 0
}

// counter is a single monotonic count.
type counter struct{ n atomic.Uint64 }

// cowMap is a copy-on-write map: lookups are one atomic load and a map read, inserts (rare: once
// per new label combination) copy the map under a lock. The zero value is empty and ready.
type cowMap[K comparable, V any] struct {
	mu sync.Mutex
	p  atomic.Pointer[map[K]*V]
}

func (m *cowMap[K, V]) get(k K) *V {
	if mp := m.p.Load(); mp != nil {
		return (*mp)[k]
	}
	return nil
}

// getOrCreate returns the value for k, creating a zero one if needed.
func (m *cowMap[K, V]) getOrCreate(k K) *V {
	if v := m.get(k); v != nil {
		return v
	}
	return m.create(k, nil)
}

// create inserts a new value for k, initialised by init (if not nil) before any other goroutine can
// see it, unless one exists already.
func (m *cowMap[K, V]) create(k K, init func(*V)) *V {
	m.mu.Lock()
	defer m.mu.Unlock()
	var old map[K]*V
	if p := m.p.Load(); p != nil {
		old = *p
	}
	if v := old[k]; v != nil {
		return v
	}
	nm := make(map[K]*V, len(old)+1)
	maps.Copy(nm, old)
	v := new(V)
	if init != nil {
		init(v)
	}
	nm[k] = v
	m.p.Store(&nm)
	return v
}

// each calls f for every entry (order unspecified).
func (m *cowMap[K, V]) each(f func(K, *V)) {
	if mp := m.p.Load(); mp != nil {
		for k, v := range *mp {
			f(k, v)
		}
	}
}

// cowSlice is a copy-on-write slice of series entries: readers load it with one atomic read and
// scan it; writers (once per new label combination) append under mu. Entries flagged as aliases map
// a raw label value beyond a cap to the series of its capped value; snapshots skip them.
type cowSlice[E any] struct {
	mu sync.Mutex
	p  atomic.Pointer[[]E]
}

func (c *cowSlice[E]) load() []E {
	if p := c.p.Load(); p != nil {
		return *p
	}
	return nil
}

// maxEntries bounds the entries (series and aliases) of a family's lookup slice; beyond it, a value
// takes the locked slow path each time.
const maxEntries = 512

// appendLocked publishes e; the caller holds c.mu. An alias is dropped when the slice already holds
// maxEntries entries.
func (c *cowSlice[E]) appendLocked(e E, alias bool) {
	old := c.load()
	if alias && len(old) >= maxEntries {
		return
	}
	n := make([]E, len(old), len(old)+1)
	copy(n, old)
	n = append(n, e)
	c.p.Store(&n)
}

// entry is one element of a family's lookup slice.
type entry[K comparable, V any] struct {
	k     K
	v     *V
	alias bool // k is a raw key whose capped key owns v
}

// family is a set of series of one metric, keyed by label set. Hot paths scan load() with a typed
// loop; create is the slow path.
type family[K comparable, V any] struct {
	cowSlice[entry[K, V]]
}

// create returns the series of capped (creating it, initialised by init, if needed) and makes raw
// an alias of it when raw differs.
func (f *family[K, V]) create(raw, capped K, init func(*V)) *V {
	f.mu.Lock()
	defer f.mu.Unlock()
	var v *V
	for _, e := range f.load() {
		if e.k == raw {
			return e.v // another goroutine created it
		}
		if e.k == capped && !e.alias {
			v = e.v
		}
	}
	if v == nil {
		v = new(V)
		if init != nil {
			init(v)
		}
		// Keep the caller's strings as the key when they are the capped value: they are usually
		// constants, so later lookups compare equal pointers and skip the byte comparison.
		k := capped
		if raw == capped {
			k = raw
		}
		f.appendLocked(entry[K, V]{k: k, v: v}, false)
	}
	if raw != capped {
		f.appendLocked(entry[K, V]{k: raw, v: v, alias: true}, true)
	}
	return v
}

// each calls fn for every series (aliases skipped).
func (f *family[K, V]) each(fn func(K, *V)) {
	for _, e := range f.load() {
		if !e.alias {
			fn(e.k, e.v)
		}
	}
}

// cappedSet interns label values up to a cap; values beyond it become Other. Known values are found
// without allocating.
type cappedSet struct {
	mu sync.Mutex
	p  atomic.Pointer[map[string]string]
}

// intern returns v itself (a stable copy) if it is known or there is still room, else Other.
func (s *cappedSet) intern(v string, max int) string {
	if mp := s.p.Load(); mp != nil {
		if iv, ok := (*mp)[v]; ok {
			return iv
		}
		if len(*mp) >= max {
			return Other // the set only grows: no lock once it is full
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var old map[string]string
	if p := s.p.Load(); p != nil {
		old = *p
	}
	if iv, ok := old[v]; ok {
		return iv
	}
	if len(old) >= max {
		return Other
	}
	nm := make(map[string]string, len(old)+1)
	maps.Copy(nm, old)
	iv := strings.Clone(v)
	nm[iv] = iv
	s.p.Store(&nm)
	return iv
}

// errnoTable maps errno names to small indexes so a connection's close counts can live in a fixed
// array. Index 0 is "" (clean close), the last index is Other.
type errnoTable struct {
	mu    sync.Mutex
	names atomic.Pointer[[]string]
}

// maxErrnos is the number of distinct errno label values per series, including "" and Other.
const maxErrnos = 32

func (t *errnoTable) index(errno string) int {
	if errno == "" {
		return 0
	}
	if np := t.names.Load(); np != nil {
		for i, n := range *np {
			if n == errno {
				return i + 1
			}
		}
		if len(*np) >= maxErrnos-2 {
			return maxErrnos - 1 // full (it only grows): no lock
		}
	}
	if errno == Other {
		return maxErrnos - 1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var old []string
	if np := t.names.Load(); np != nil {
		old = *np
	}
	for i, n := range old {
		if n == errno {
			return i + 1
		}
	}
	if len(old) >= maxErrnos-2 {
		return maxErrnos - 1
	}
	nn := make([]string, len(old)+1)
	copy(nn, old)
	nn[len(old)] = errno // usually a constant (splice.Errno): equal pointers compare fast
	t.names.Store(&nn)
	return len(old) + 1
}

func (t *errnoTable) name(i int) string {
	switch {
	case i == 0:
		return ""
	case i == maxErrnos-1:
		return Other
	}
	if np := t.names.Load(); np != nil && i-1 < len(*np) {
		return (*np)[i-1]
	}
	return Other
}

// maxBuckets is the largest number of finite bucket bounds of a histogram.
const maxBuckets = 28

// histSeries is a counter plus a fixed-bucket histogram of durations. The bucket bounds live with
// the family, not the series.
type histSeries struct {
	sumNano atomic.Int64
	buckets [maxBuckets + 1]atomic.Uint64 // non-cumulative; last is +Inf
}

func (h *histSeries) observe(bounds []int64, d time.Duration) {
	ns := int64(d)
	if ns < 0 {
		ns = 0
	}
	i := 0
	for i < len(bounds) && ns > bounds[i] {
		i++
	}
	if i == len(bounds) {
		i = maxBuckets
	}
	h.buckets[i].Add(1)
	h.sumNano.Add(ns)
}

// count returns the number of observations (the sum of the buckets).
func (h *histSeries) count() uint64 {
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
	}
	return n
}

// snapshot reads the histogram. Count is the sum of the buckets, so it is always consistent with
// them.
func (h *histSeries) snapshot(secs []float64) Histogram {
	out := Histogram{
		Bounds: append([]float64(nil), secs...),
		Counts: make([]uint64, len(secs)),
	}
	var cum uint64
	for i := range secs {
		cum += h.buckets[i].Load()
		out.Counts[i] = cum
	}
	out.Count = cum + h.buckets[maxBuckets].Load()
	out.Sum = time.Duration(h.sumNano.Load()).Seconds()
	return out
}

// seconds converts bucket bounds in seconds to nanoseconds.
func nanos(secs []float64) []int64 {
	out := make([]int64, len(secs))
	for i, s := range secs {
		out[i] = int64(s * float64(time.Second))
	}
	return out
}

// Bucket bounds, in seconds, of the histograms. They are fixed by this package so that every
// process exports comparable histograms; snapshots carry a copy (Histogram.Bounds).
var (
	// bounds of protocol_detect_duration_seconds.
	detectBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	// bounds of tcp_connection_duration_seconds.
	connDurationBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}
	// bounds of tls_handshake_duration_seconds.
	handshakeBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	// bounds of response_latency_seconds (Linkerd's response_latency_ms bounds, in seconds).
	latencyBuckets = []float64{0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1, 2, 3, 4, 5, 10, 20, 30, 40, 50}

	connDurationBounds = nanos(connDurationBuckets)
	detectBounds       = nanos(detectBuckets)
	handshakeBounds    = nanos(handshakeBuckets)
	latencyBounds      = nanos(latencyBuckets)
)
