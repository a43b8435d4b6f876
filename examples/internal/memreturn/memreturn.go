// Package memreturn hands memory back to the operating system after a load spike, for the
// examples' long-running proxies.
//
// Go's background scavenger returns freed heap pages slowly (it is paced to about 1% of a CPU),
// and after a spike an idle process may allocate too little to start another garbage collection:
// a proxy that held 5,000 connections for a minute, or opened 2,000 keep-alive connections in a
// burst and parked them, keeps the burst's garbage, freed pages and goroutine stacks resident,
// which is what an operator's RSS graph and the OOM killer see. Run checks every interval how
// much memory could go back: heap free and not yet returned, heap objects beyond those the last
// collection found live (garbage not yet collected), and goroutine stack space beyond what the
// goroutines alive now need. It forces a return (Return: two garbage collections, then every free
// page handed back at once) when that exceeds both Floor and the live heap, and once when the process
// goes quiet after a burst (it allocated Quiet or more in one interval and less than Quiet in the
// next) holding more than Floor in its heap: what a burst left is mostly objects that were live
// at the collection during it and are garbage now, which no reading can tell from live ones without
// a collection. A process quiet for two checks in a row gives back what it frees as soon as that
// passes QuietFloor. Under steady load none of these holds, so it costs nothing there; once a
// burst is over, the process's memory follows what it holds.
package memreturn

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Floor is the reclaimable memory, in bytes, below which Run never forces a return.
const Floor = 4 << 20

// Quiet is the allocation, in bytes per check, below which a process counts as quiet.
const Quiet = 1 << 20

// QuietFloor is the reclaimable memory, in bytes, above which Run forces a return in a process
// that stayed quiet for two checks in a row: nothing is allocating, so there is no churn to
// avoid, and what a quiet process frees later (a pool closing the connections a burst opened)
// goes back too.
const QuietFloor = 1 << 20

// Stats is what one check reads (bytes, except Goroutines).
type Stats struct {
	Free       uint64 // heap free and not yet returned
	Objects    uint64 // heap objects, live or not yet collected
	Live       uint64 // heap objects the last collection found live
	Stacks     uint64 // goroutine stacks, in use or cached
	Goroutines uint64
	Allocated  uint64 // allocated since the previous check
	// AllocatedBefore is what was allocated in the interval before that (Quiet or more for the
	// first check: a process starting up is busy).
	AllocatedBefore uint64
}

// stackNeed is the stack space counted as in use per live goroutine: more is (very likely) cached.
const stackNeed = 16 << 10

// Reclaimable is the memory a collection and a return would give back, at most.
func (s Stats) Reclaimable() uint64 {
	r := s.Free
	if s.Objects > s.Live {
		r += s.Objects - s.Live
	}
	if need := stackNeed * s.Goroutines; s.Stacks > need {
		r += s.Stacks - need
	}
	return r
}

// ShouldReturn reports whether Run forces a return for s.
func (s Stats) ShouldReturn() bool {
	r := s.Reclaimable()
	if r > Floor && r > s.Live {
		return true
	}
	if s.Allocated < Quiet && s.AllocatedBefore < Quiet {
		return r > QuietFloor
	}
	wentQuiet := s.AllocatedBefore >= Quiet && s.Allocated < Quiet
	return wentQuiet && s.Free+s.Objects > Floor
}

// Return collects garbage twice and hands every free page back to the operating system. The
// second collection is what frees the objects parked in sync.Pools (a collection moves a pool's
// contents to its victim cache, the next one drops them): the buffers a burst left there, and
// whatever they still point to, would otherwise stay until traffic starts collections again.
func Return() {
	runtime.GC()
	debug.FreeOSMemory()
}

// Run checks every interval until ctx is done; it returns the number of returns it forced.
func Run(ctx context.Context, interval time.Duration) int {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
		{Name: "/gc/heap/allocs:bytes"},
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	forced := 0
	metrics.Read(samples)
	allocs, before := samples[5].Value.Uint64(), uint64(Quiet)
	for {
		select {
		case <-ctx.Done():
			return forced
		case <-t.C:
		}
		metrics.Read(samples)
		s := Stats{
			Free:       samples[0].Value.Uint64(),
			Objects:    samples[1].Value.Uint64(),
			Live:       samples[2].Value.Uint64(),
			Stacks:     samples[3].Value.Uint64(),
			Goroutines: samples[4].Value.Uint64(),
			Allocated:  samples[5].Value.Uint64() - allocs,

			AllocatedBefore: before,
		}
		allocs, before = samples[5].Value.Uint64(), s.Allocated
		if s.ShouldReturn() {
			Return()
			forced++
			metrics.Read(samples)
			allocs = samples[5].Value.Uint64()
		}
	}
}
