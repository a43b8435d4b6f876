package detect

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

type learnerEvents struct {
	mu  sync.Mutex
	evs []LearnerEvent
}

func (e *learnerEvents) add(ev LearnerEvent) { e.mu.Lock(); e.evs = append(e.evs, ev); e.mu.Unlock() }
func (e *learnerEvents) list() []LearnerEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]LearnerEvent(nil), e.evs...)
}

var (
	resServerFirst = Result{Protocol: Unknown, Reason: ReasonServerFirst}
	resNoMatch     = Result{Protocol: Unknown, Reason: ReasonNoMatch}
	resTimeout     = Result{Protocol: Unknown, Reason: ReasonTimeout}
	resClosed      = Result{Protocol: Unknown, Reason: ReasonClosed}
	resHTTP1       = Result{Protocol: HTTP1, Reason: ReasonMatched}
)

func TestLearnerLearnsAfterThresholdAndExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	var ev learnerEvents
	l := &Learner{Threshold: 3, TTL: time.Minute, OnChange: ev.add, now: func() time.Time { return now }}

	assert.False(t, l.Learned(3306))
	l.Observe(3306, resServerFirst)
	l.Observe(3306, resNoMatch)
	l.Observe(3306, resClosed) // neither way
	assert.False(t, l.Learned(3306), "two opaque results are below the threshold")
	l.Observe(3306, resTimeout)
	assert.True(t, l.Learned(3306))
	assert.Equal(t, 1, l.Len())
	assert.Equal(t, []LearnerEvent{{Port: 3306, Change: LearnerLearned}}, ev.list())

	now = now.Add(59 * time.Second)
	assert.True(t, l.Learned(3306))
	now = now.Add(time.Second)
	assert.False(t, l.Learned(3306), "expired after TTL")
	assert.Equal(t, 0, l.Len())
	assert.Equal(t, LearnerEvent{Port: 3306, Change: LearnerExpired}, ev.list()[1])

	// Counting starts again from zero.
	l.Observe(3306, resServerFirst)
	assert.False(t, l.Learned(3306))
}

func TestLearnerKnownProtocolResetsAndForgets(t *testing.T) {
	var ev learnerEvents
	l := &Learner{Threshold: 2, OnChange: ev.add}
	l.Observe(80, resServerFirst)
	l.Observe(80, resHTTP1) // streak reset
	l.Observe(80, resServerFirst)
	assert.False(t, l.Learned(80))
	l.Observe(80, resServerFirst)
	assert.True(t, l.Learned(80))
	l.Observe(80, resHTTP1)
	assert.False(t, l.Learned(80))
	assert.Equal(t, []LearnerEvent{{80, LearnerLearned}, {80, LearnerForgotten}}, ev.list())
	l.Observe(81, Result{Protocol: TLS, Reason: ReasonMatched})
	assert.Equal(t, 2, len(l.ports), "known protocols are remembered too (ClientFirst), within MaxPorts")
}

// TestLearnerClientFirst: Threshold results in a row with a protocol the client named make the
// port client-first; a server-first or opaque result resets it, a closed one counts neither way.
func TestLearnerClientFirst(t *testing.T) {
	l := &Learner{Threshold: 3}
	for range 2 {
		l.Observe(8080, resHTTP1)
	}
	assert.False(t, l.ClientFirst(8080), "two results are below the threshold")
	l.Observe(8080, Result{Protocol: Unknown, Reason: ReasonClosed})
	assert.False(t, l.ClientFirst(8080))
	l.Observe(8080, resHTTP1)
	assert.True(t, l.ClientFirst(8080), "a closed result does not break the run")
	assert.False(t, l.Learned(8080))
	l.Observe(8080, resServerFirst)
	assert.False(t, l.ClientFirst(8080), "a server-first result resets it")
	for range 3 {
		l.Observe(8080, Result{Protocol: TLS, Reason: ReasonMatched})
	}
	assert.True(t, l.ClientFirst(8080))
	assert.False(t, l.ClientFirst(9090), "an unseen port")
}

func TestLearnerBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	var ev learnerEvents
	l := &Learner{Threshold: 1, MaxPorts: 4, TTL: time.Hour, OnChange: ev.add, now: func() time.Time { return now }}
	for p := uint16(1); p <= 100; p++ {
		now = now.Add(time.Second)
		l.Observe(p, resServerFirst)
		assert.LessOrEqual(t, len(l.ports), 4)
	}
	// The four most recent remain; the others were evicted (and reported).
	for p := uint16(97); p <= 100; p++ {
		assert.True(t, l.Learned(p), "port %d", p)
	}
	assert.False(t, l.Learned(1))
	evicted := 0
	for _, e := range ev.list() {
		if e.Change == LearnerEvicted {
			evicted++
		}
	}
	assert.Equal(t, 96, evicted)

	// Expired entries are dropped first when room is needed.
	now = now.Add(2 * time.Hour)
	l.Observe(200, resServerFirst)
	assert.Equal(t, 1, len(l.ports))
	assert.True(t, l.Learned(200))
}

func TestLearnerZeroValueConcurrent(t *testing.T) {
	var l Learner // zero value: defaults
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				p := uint16(g*1000 + i%50)
				l.Observe(p, resServerFirst)
				_ = l.Learned(p)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 8*50, l.Len())
	assert.True(t, l.Learned(0))
}

func TestLearnerChangeString(t *testing.T) {
	for c, s := range map[LearnerChange]string{LearnerLearned: "learned", LearnerExpired: "expired",
		LearnerForgotten: "forgotten", LearnerEvicted: "evicted", LearnerChange(99): "unknown"} {
		assert.Equal(t, s, c.String())
	}
}
