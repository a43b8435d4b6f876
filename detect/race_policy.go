package detect

import (
	"sync/atomic"
	"time"
)

// Defaults of a zero [RacePolicy].
const (
	// DefaultRaceGrace is how long a client may stay silent before its upstream is dialled for the
	// server-first race. Measured on loopback from accept to the client's first byte: curl 0.3 ms
	// (p50) to 0.5 ms (max), redis-cli 0.4 ms to 7.6 ms and openssl s_client 0.6 ms to 4.2 ms on a
	// loaded 2-core machine, a Go client 9 µs; a client-first protocol sends its first bytes in the
	// same flight as the handshake's last ACK. A client later than the grace is raced: for a
	// protocol spliced opaque the raced connection is the one used, only an HTTP client's is thrown
	// away, and a Learner stops racing a port whose clients keep naming their protocol. A
	// server-first port pays the grace on its first connections, until a Learner has learned it:
	// 2 ms keeps its first greeting within 2x of a port declared opaque.
	DefaultRaceGrace = 2 * time.Millisecond
	// DefaultMaxRaces is the most races a RacePolicy lets run at once.
	DefaultMaxRaces = 256
)

// RacePolicy says when a proxy races a silent client against its upstream with
// [Detector.DetectUpstream], so that clients that connect and say nothing cost the proxy, not its
// peers:
//
//   - A client that speaks within Grace is detected without dialling anything first: a
//     client-first protocol (HTTP, TLS, every request/response protocol) never causes a connection,
//     or a mutual-TLS handshake, that is thrown away once it turns out to be HTTP served elsewhere.
//   - A client still silent after Grace is raced if fewer than MaxRaces races are running: the
//     upstream is dialled and whichever side speaks first decides. Otherwise it waits for its own
//     bytes, or its detection timeout, without a dial, and the refusal is counted.
//   - With a Learner, a port whose last results all came from clients naming their protocol
//     ([Learner.ClientFirst]) is not raced at all; a port learned server-first ([Learner.Learned])
//     is for the caller to splice at once, without detection.
//
// The zero value is ready to use; the fields must not change after first use. A RacePolicy is safe
// for concurrent use and meant to be shared by every connection of a proxy.
type RacePolicy struct {
	// Grace is the silence before a race: 0 means DefaultRaceGrace, a negative value none (race at
	// once, the behaviour of DetectUpstream called on every connection).
	Grace time.Duration
	// MaxRaces bounds the races running at once: 0 means DefaultMaxRaces, negative no bound.
	MaxRaces int
	// Learner, if set, is consulted per port (see above) and should be fed every result.
	Learner *Learner

	running                   atomic.Int64
	started, capped, notRaced atomic.Uint64
}

// RaceStats are a [RacePolicy]'s counts since it was created.
type RaceStats struct {
	Running  int64  // races running now
	Started  uint64 // races started
	Capped   uint64 // silent clients not raced because MaxRaces were running
	NotRaced uint64 // silent clients not raced because their port is client-first
}

// Stats returns the policy's counts.
func (p *RacePolicy) Stats() RaceStats {
	return RaceStats{
		Running:  p.running.Load(),
		Started:  p.started.Load(),
		Capped:   p.capped.Load(),
		NotRaced: p.notRaced.Load(),
	}
}

// Plan returns how a new connection to port waits: for up to grace for the client's first bytes,
// then a race if race is true (and [RacePolicy.TryStart] grants one). race is false for a port
// whose clients are known to speak first: wait for the client for the whole detection timeout.
func (p *RacePolicy) Plan(port uint16) (grace time.Duration, race bool) {
	if p.Learner != nil && p.Learner.ClientFirst(port) {
		return 0, false
	}
	switch {
	case p.Grace < 0:
		return 0, true
	case p.Grace == 0:
		return DefaultRaceGrace, true
	}
	return p.Grace, true
}

// TryStart takes a race slot for a client still silent after its grace; it reports false, and
// counts it, when MaxRaces races are running. Every true must be followed by one [RacePolicy.Done]
// once the race is decided.
func (p *RacePolicy) TryStart() bool {
	max := int64(p.MaxRaces)
	if max == 0 {
		max = DefaultMaxRaces
	}
	if n := p.running.Add(1); max > 0 && n > max {
		p.running.Add(-1)
		p.capped.Add(1)
		return false
	}
	p.started.Add(1)
	return true
}

// Done gives back the slot of a race that TryStart started.
func (p *RacePolicy) Done() { p.running.Add(-1) }

// Skipped counts a silent client that was not raced because [RacePolicy.Plan] said so.
func (p *RacePolicy) Skipped() { p.notRaced.Add(1) }
