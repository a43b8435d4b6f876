//go:build race

package detect_test

// underRace: the race detector is on (sync.Pool then drops items at random, so allocation counts
// mean nothing).
const underRace = true
