//go:build !race

package opaque

// raceEnabled: the race detector is on (tests then take about six times
// longer).
const raceEnabled = false
