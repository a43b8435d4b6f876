//go:build !race

package testnet

// RaceEnabled reports whether the race detector is on: tests that try many inputs or time
// themselves then take a sample, or allow more time (it makes them several times slower).
const RaceEnabled = false
