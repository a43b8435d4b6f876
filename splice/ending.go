package splice

import "time"

// ending is how a join ended, shared by Joiner.Join and Loop: the first event sets First and
// End, the first error sets Err.
type ending struct {
	ended bool
	first Side
	end   End
	err   error
}

// set records an ending event.
func (e *ending) set(side Side, end End, err error) {
	if !e.ended {
		e.ended = true
		e.first, e.end = side, end
	}
	if err != nil && e.err == nil {
		e.err = err
	}
}

// stats fills the ending's part of st.
func (e *ending) stats(st *Stats) {
	st.First, st.End, st.Err = e.first, e.end, e.err
}

// firstCheck is when a join's timer first fires: the sooner of the idle timeout and the
// lifetime; 0 when there is neither.
func firstCheck(idle, lifetime time.Duration) time.Duration {
	first := idle
	if lifetime > 0 && (first <= 0 || lifetime < first) {
		first = lifetime
	}
	return max(first, 0)
}

// check applies the lifetime and the idle timeout to a join that is age old and idle for
// idleFor: it returns the end (with its error) that is due, or else the wait until the next
// possible one.
func check(age, idleFor, idle, lifetime time.Duration) (next time.Duration, end End, err error) {
	if lifetime > 0 {
		if age >= lifetime {
			return 0, EndLifetime, ErrLifetime
		}
		next = lifetime - age
	}
	if idle > 0 {
		if idleFor >= idle {
			return 0, EndIdleTimeout, ErrIdleTimeout
		}
		if next == 0 || idle-idleFor < next {
			next = idle - idleFor
		}
	}
	return next, 0, nil
}
