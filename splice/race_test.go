//go:build race

package splice

const raceEnabled = true
