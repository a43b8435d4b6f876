package splice

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestEnding: the first event names the side and the end, the first error is kept, later ones
// are not.
func TestEnding(t *testing.T) {
	var e ending
	boom := errors.New("boom")
	e.set(SideB, EndEOF, nil)
	e.set(SideA, EndReset, boom)
	e.set(SideNone, EndCanceled, errors.New("later"))
	var st Stats
	e.stats(&st)
	assert.Equal(t, Stats{First: SideB, End: EndEOF, Err: boom}, st)
}

// TestCheck: the lifetime and the idle timeout at, just before and just after their limits, and
// the wait until the next possible end.
func TestCheck(t *testing.T) {
	const s = time.Second
	for _, tc := range []struct {
		age, idleFor, idle, lifetime time.Duration
		next                         time.Duration
		end                          End
		err                          error
	}{
		{age: 9 * s, idleFor: 1 * s, idle: 0, lifetime: 10 * s, next: 1 * s},
		{age: 10 * s, idleFor: 0, idle: 0, lifetime: 10 * s, end: EndLifetime, err: ErrLifetime},
		{age: 11 * s, idleFor: 0, idle: 0, lifetime: 10 * s, end: EndLifetime, err: ErrLifetime},
		{age: 20 * s, idleFor: 4 * s, idle: 5 * s, lifetime: 0, next: 1 * s},
		{age: 20 * s, idleFor: 5 * s, idle: 5 * s, lifetime: 0, end: EndIdleTimeout, err: ErrIdleTimeout},
		{age: 20 * s, idleFor: 6 * s, idle: 5 * s, lifetime: 0, end: EndIdleTimeout, err: ErrIdleTimeout},
		// Both: the sooner next check, and the lifetime wins when both are due.
		{age: 8 * s, idleFor: 1 * s, idle: 5 * s, lifetime: 10 * s, next: 2 * s},
		{age: 2 * s, idleFor: 1 * s, idle: 5 * s, lifetime: 10 * s, next: 4 * s},
		// The idle deadline is sooner than the lifetime's although idle +
		// idleFor is not (the wait is idle - idleFor, compared as such).
		{age: 2 * s, idleFor: 4 * s, idle: 5 * s, lifetime: 10 * s, next: 1 * s},
		// Both due at the same time: the same wait either way.
		{age: 6 * s, idleFor: 1 * s, idle: 5 * s, lifetime: 10 * s, next: 4 * s},
		{age: 10 * s, idleFor: 5 * s, idle: 5 * s, lifetime: 10 * s, end: EndLifetime, err: ErrLifetime},
		{age: 20 * s, idleFor: 20 * s, idle: 0, lifetime: 0, next: 0},
	} {
		next, end, err := check(tc.age, tc.idleFor, tc.idle, tc.lifetime)
		assert.Equal(t, tc.next, next, "%+v", tc)
		assert.Equal(t, tc.end, end, "%+v", tc)
		assert.Equal(t, tc.err, err, "%+v", tc)
	}
	assert.Equal(t, 5*s, firstCheck(5*s, 0))
	assert.Equal(t, 3*s, firstCheck(5*s, 3*s))
	assert.Equal(t, 3*s, firstCheck(0, 3*s))
	assert.Equal(t, 3*s, firstCheck(3*s, 5*s))
	assert.Equal(t, time.Duration(0), firstCheck(0, 0))
}
