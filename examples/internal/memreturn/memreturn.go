// Package memreturn hands memory back to the operating system after a load spike, for the
// examples' long-running proxies.
//
// Go's background scavenger returns freed heap pages slowly (it is paced to about 1% of a CPU): a
// proxy that held 5,000 connections for a minute keeps most of that memory resident long after
// they closed, which is what an operator's RSS graph and the OOM killer see. Run checks every
// interval how much memory is idle: heap free and not yet returned, plus goroutine stack space
// beyond what the goroutines alive now need (freed stacks stay cached until a garbage collection,
// and after a spike nothing may allocate enough to start one). When that exceeds both a floor and
// the live heap, it calls debug.FreeOSMemory (one garbage collection, then every free page
// returned at once). Under steady load the condition does not hold, so it costs nothing there.
package memreturn

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Floor is the free heap, in bytes, below which Run never forces a return.
const Floor = 4 << 20

// Run checks every interval until ctx is done; it returns the number of returns it forced.
func Run(ctx context.Context, interval time.Duration) int {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},    // free, not yet returned
		{Name: "/memory/classes/heap/objects:bytes"}, // live and unswept objects
		{Name: "/memory/classes/heap/stacks:bytes"},  // goroutine stacks, in use or cached
		{Name: "/sched/goroutines:goroutines"},
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	forced := 0
	for {
		select {
		case <-ctx.Done():
			return forced
		case <-t.C:
		}
		metrics.Read(samples)
		idle := samples[0].Value.Uint64()
		objects := samples[1].Value.Uint64()
		// Stacks beyond 16 KiB per live goroutine are (very likely) cached, not in use.
		if stacks, need := samples[2].Value.Uint64(), 16<<10*samples[3].Value.Uint64(); stacks > need {
			idle += stacks - need
		}
		if idle > Floor && idle > objects {
			debug.FreeOSMemory()
			forced++
		}
	}
}
