package detect

import (
	"sync"
	"time"
)

// Defaults of a zero [Learner].
const (
	DefaultLearnerThreshold = 3
	DefaultLearnerTTL       = 10 * time.Minute
	DefaultLearnerMaxPorts  = 1024
)

// LearnerChange says what happened to a port in a [Learner].
type LearnerChange uint8

const (
	// LearnerLearned: the port reached Threshold server-first/opaque results in a row; Learned
	// reports true for it until TTL passes.
	LearnerLearned LearnerChange = iota
	// LearnerExpired: the port's TTL passed; it is detected again.
	LearnerExpired
	// LearnerForgotten: a result with a known protocol was observed on a learned port.
	LearnerForgotten
	// LearnerEvicted: the port was dropped to keep the memory within MaxPorts.
	LearnerEvicted
)

// String returns a short lower-case name, suitable as a metric label.
func (c LearnerChange) String() string {
	switch c {
	case LearnerLearned:
		return "learned"
	case LearnerExpired:
		return "expired"
	case LearnerForgotten:
		return "forgotten"
	case LearnerEvicted:
		return "evicted"
	}
	return "unknown"
}

// LearnerEvent reports a change of a learned port to [Learner].OnChange.
type LearnerEvent struct {
	Port   uint16
	Change LearnerChange
}

// Learner is an opt-in, bounded, expiring memory of ports whose connections keep turning out
// server-first or opaque, so that a proxy can skip detection (and the race) there:
//
//	if l.Learned(port) {
//		// splice at once, as for a port declared opaque
//	} else {
//		res, c, up, err := d.DetectUpstream(ctx, c, up)
//		l.Observe(port, res)
//		...
//	}
//
// A port is learned after Threshold results in a row that are [ReasonServerFirst] or Protocol
// [Unknown] (no match, timeout, peek limit); a result with a known protocol resets the count and
// forgets the port; a result with [ReasonClosed] counts neither way. The other way round,
// Threshold results in a row with a known protocol make [Learner.ClientFirst] report the port. A learned port is remembered for
// TTL, then detected again. At most MaxPorts ports are tracked (learned or counting); beyond that,
// expired ports and then the least recently observed are dropped.
//
// The zero value is ready to use; the fields must not change after first use. A Learner is safe for
// concurrent use.
type Learner struct {
	Threshold int           // results in a row to learn a port; 0: DefaultLearnerThreshold
	TTL       time.Duration // how long a learned port is remembered; 0: DefaultLearnerTTL
	MaxPorts  int           // ports tracked at most; 0: DefaultLearnerMaxPorts

	// OnChange, if non-nil, is called (outside the Learner's lock) when a port is learned or stops
	// being learned. A metrics package counts these and can export Len as a gauge.
	OnChange func(LearnerEvent)

	mu    sync.Mutex
	ports map[uint16]*learnedPort
	now   func() time.Time // tests only; nil: time.Now
}

type learnedPort struct {
	streak  int // server-first/opaque results in a row
	clients int // results with a protocol the client named, in a row
	learned bool
	expires time.Time // when learned
	seen    time.Time // last Observe, for eviction
}

func (l *Learner) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

func (l *Learner) threshold() int {
	if l.Threshold > 0 {
		return l.Threshold
	}
	return DefaultLearnerThreshold
}

func (l *Learner) ttl() time.Duration {
	if l.TTL > 0 {
		return l.TTL
	}
	return DefaultLearnerTTL
}

func (l *Learner) maxPorts() int {
	if l.MaxPorts > 0 {
		return l.MaxPorts
	}
	return DefaultLearnerMaxPorts
}

// opaqueResult reports whether r counts toward learning (1), against it (-1), or neither (0).
func opaqueResult(r Result) int {
	switch {
	case r.Reason == ReasonServerFirst:
		return 1
	case r.Reason == ReasonClosed:
		return 0
	case r.Protocol == Unknown || r.Protocol == "":
		return 1
	}
	return -1
}

// Observe records the detection result of one connection to port.
func (l *Learner) Observe(port uint16, r Result) {
	vote := opaqueResult(r)
	if vote == 0 {
		return
	}
	var events []LearnerEvent
	now := l.clock()
	l.mu.Lock()
	p := l.ports[port]
	if p == nil {
		if l.ports == nil {
			l.ports = make(map[uint16]*learnedPort)
		}
		if len(l.ports) >= l.maxPorts() {
			events = l.makeRoomLocked(now, events)
		}
		p = &learnedPort{}
		l.ports[port] = p
	}
	p.seen = now
	switch {
	case vote < 0:
		if p.learned {
			events = append(events, LearnerEvent{Port: port, Change: LearnerForgotten})
		}
		p.learned, p.streak = false, 0
		p.clients++
	default:
		p.clients = 0
		if p.learned && !now.Before(p.expires) {
			// Expired but not yet swept: start over.
			p.learned, p.streak = false, 0
			events = append(events, LearnerEvent{Port: port, Change: LearnerExpired})
		}
		if !p.learned {
			p.streak++
			if p.streak >= l.threshold() {
				p.learned = true
				p.expires = now.Add(l.ttl())
				events = append(events, LearnerEvent{Port: port, Change: LearnerLearned})
			}
		}
	}
	l.mu.Unlock()
	l.emit(events)
}

// makeRoomLocked drops expired learned ports or, when none has expired, the least recently
// observed port, appending the events of the learned ports it dropped.
func (l *Learner) makeRoomLocked(now time.Time, events []LearnerEvent) []LearnerEvent {
	var oldest uint16
	var oldestSeen time.Time
	found, freed := false, false
	for port, p := range l.ports {
		if p.learned && !now.Before(p.expires) {
			delete(l.ports, port)
			events = append(events, LearnerEvent{Port: port, Change: LearnerExpired})
			freed = true
			continue
		}
		if !found || p.seen.Before(oldestSeen) {
			oldest, oldestSeen, found = port, p.seen, true
		}
	}
	if freed || !found {
		return events
	}
	if l.ports[oldest].learned {
		events = append(events, LearnerEvent{Port: oldest, Change: LearnerEvicted})
	}
	delete(l.ports, oldest)
	return events
}

// Learned reports whether port is currently learned as server-first/opaque, so that detection can
// be skipped for it.
func (l *Learner) Learned(port uint16) bool {
	now := l.clock()
	l.mu.Lock()
	p := l.ports[port]
	if p == nil || !p.learned {
		l.mu.Unlock()
		return false
	}
	if now.Before(p.expires) {
		l.mu.Unlock()
		return true
	}
	delete(l.ports, port)
	l.mu.Unlock()
	l.emit([]LearnerEvent{{Port: port, Change: LearnerExpired}})
	return false
}

// ClientFirst reports whether the last Threshold results on port (or more) all had a protocol
// the client's own bytes named (HTTP, TLS, ...): the port's clients speak first, so a silent client
// there need not be raced against its server (see [RacePolicy]). A server-first or opaque result
// resets it.
func (l *Learner) ClientFirst(port uint16) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.ports[port]
	return p != nil && p.clients >= l.threshold()
}

// Len returns the number of ports currently learned (expired ones not yet dropped included).
func (l *Learner) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.ports {
		if p.learned {
			n++
		}
	}
	return n
}

func (l *Learner) emit(events []LearnerEvent) {
	if l.OnChange == nil {
		return
	}
	for _, ev := range events {
		l.OnChange(ev)
	}
}
