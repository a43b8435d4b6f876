//go:build !race

package opaque_test

// raceEnabled: the race detector is on; the limit tests then try a sample
// of their inputs (scripts/mutate runs them without it, on all inputs).
const raceEnabled = false
