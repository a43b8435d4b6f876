//go:build !race

package proxy

// raceEnabled: the race detector is on.
const raceEnabled = false
