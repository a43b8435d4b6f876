package detect_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sniffsplice/sniff/detect"
)

func TestRacePolicyPlan(t *testing.T) {
	var zero detect.RacePolicy
	g, race := zero.Plan(25)
	assert.Equal(t, detect.DefaultRaceGrace, g)
	assert.True(t, race)

	g, race = (&detect.RacePolicy{Grace: -1}).Plan(25)
	assert.Zero(t, g, "a negative grace races at once")
	assert.True(t, race)

	l := &detect.Learner{Threshold: 2}
	p := &detect.RacePolicy{Grace: 7 * time.Millisecond, Learner: l}
	g, race = p.Plan(8080)
	assert.Equal(t, 7*time.Millisecond, g)
	assert.True(t, race)
	for range 2 {
		l.Observe(8080, detect.Result{Protocol: detect.HTTP1, Reason: detect.ReasonMatched})
	}
	_, race = p.Plan(8080)
	assert.False(t, race, "a client-first port is not raced")
	_, race = p.Plan(25)
	assert.True(t, race, "other ports still are")
	l.Observe(8080, detect.Result{Protocol: detect.Unknown, Reason: detect.ReasonServerFirst})
	_, race = p.Plan(8080)
	assert.True(t, race, "a server-first result ends it")
}

// TestRacePolicyCap: never more than MaxRaces at once, under concurrent use; the refusals are
// counted and slots come back.
func TestRacePolicyCap(t *testing.T) {
	p := &detect.RacePolicy{MaxRaces: 3}
	for range 3 {
		assert.True(t, p.TryStart())
	}
	assert.False(t, p.TryStart(), "the fourth at once is refused")
	p.Done()
	assert.True(t, p.TryStart(), "a slot that came back is taken again")
	for range 3 {
		p.Done()
	}
	assert.Equal(t, detect.RaceStats{Running: 0, Started: 4, Capped: 1}, p.Stats())

	var wg sync.WaitGroup
	var mu sync.Mutex
	peak, running := 0, 0
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if !p.TryStart() {
					continue
				}
				mu.Lock()
				running++
				peak = max(peak, running)
				mu.Unlock()
				mu.Lock()
				running--
				mu.Unlock()
				p.Done()
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, peak, 3)
	assert.Zero(t, p.Stats().Running)

	unbounded := &detect.RacePolicy{MaxRaces: -1}
	for range 1000 {
		assert.True(t, unbounded.TryStart())
	}
}
