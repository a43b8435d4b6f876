package memreturn

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const mib = 1 << 20

// TestShouldReturn: the rule's edges, each on both sides.
func TestShouldReturn(t *testing.T) {
	busy := uint64(64 * mib)                                                                // allocated since the previous check: not quiet
	quiet := func(s Stats) Stats { s.Allocated, s.AllocatedBefore = 0, 0; return s }        // quiet, and quiet before
	wentQuiet := func(s Stats) Stats { s.Allocated, s.AllocatedBefore = 0, busy; return s } // quiet after a busy interval
	for _, c := range []struct {
		name string
		s    Stats
		want bool
	}{
		{"nothing to give back", Stats{Live: 10 * mib, Objects: 10 * mib, Allocated: busy}, false},
		{"free above the floor and the live heap, busy", Stats{Free: 9 * mib, Live: 8 * mib, Objects: 8 * mib, Allocated: busy}, true},
		{"free above the floor, at the live heap, busy", Stats{Free: 8 * mib, Live: 8 * mib, Objects: 8 * mib, Allocated: busy}, false},
		{"free above the live heap, at the floor, busy", Stats{Free: Floor, Live: mib, Objects: mib, Allocated: busy}, false},
		{"free above the live heap, above the floor, busy", Stats{Free: Floor + 1, Live: mib, Objects: mib, Allocated: busy}, true},
		{"quiet, at the quiet floor", quiet(Stats{Free: QuietFloor, Live: 64 * mib, Objects: 64 * mib}), false},
		{"quiet, above the quiet floor", quiet(Stats{Free: QuietFloor + 1, Live: 64 * mib, Objects: 64 * mib}), true},
		{"quiet: garbage counts", quiet(Stats{Live: 64 * mib, Objects: 64*mib + QuietFloor + 1}), true},
		{"quiet for one check only", Stats{Free: QuietFloor + 1, Live: 2 * mib, Objects: 2 * mib, Allocated: 0, AllocatedBefore: Quiet}, false},
		{"busy, above the quiet floor", Stats{Free: QuietFloor + 1, Live: 64 * mib, Objects: 64 * mib, Allocated: Quiet, AllocatedBefore: 0}, false},
		{"garbage counts", Stats{Live: 5 * mib, Objects: 10*mib + 1, Allocated: busy}, true},
		{"garbage at the live heap", Stats{Live: 5 * mib, Objects: 10 * mib, Allocated: busy}, false},
		{"objects below live (swept since) count nothing", Stats{Live: 16 * mib, Objects: 8 * mib, Free: Floor + 1, Allocated: busy}, false},
		{"cached stacks count", Stats{Stacks: 2*stackNeed + Floor + 1, Goroutines: 2, Live: Floor, Allocated: busy}, true},
		{"stacks in use do not", Stats{Stacks: 2*stackNeed + Floor, Goroutines: 2, Live: Floor, Allocated: busy}, false},
		{"went quiet above the floor", wentQuiet(Stats{Live: 64 * mib, Objects: Floor + 1}), true},
		{"went quiet at the floor", wentQuiet(Stats{Live: 64 * mib, Objects: Floor - mib, Free: mib}), false},
		{"went quiet: free counts", wentQuiet(Stats{Live: 64 * mib, Objects: Floor - mib, Free: mib + 1}), true},
		{"stays quiet", quiet(Stats{Live: 64 * mib, Objects: 64 * mib}), false},
		{"stays busy", Stats{Live: 64 * mib, Objects: 64 * mib, Allocated: busy, AllocatedBefore: busy}, false},
		{"just below quiet after busy", Stats{Live: 64 * mib, Objects: 64 * mib, Allocated: Quiet - 1, AllocatedBefore: Quiet}, true},
		{"at quiet after busy", Stats{Live: 64 * mib, Objects: 64 * mib, Allocated: Quiet, AllocatedBefore: Quiet}, false},
		{"quiet after just below busy", Stats{Live: 64 * mib, Objects: 64 * mib, Allocated: 0, AllocatedBefore: Quiet - 1}, false},
	} {
		if got := c.s.ShouldReturn(); got != c.want {
			t.Errorf("%s: %+v: ShouldReturn = %v, want %v (reclaimable %d)", c.name, c.s, got, c.want, c.s.Reclaimable())
		}
	}
}

var sink [][]byte

// TestRunReturnsAfterABurst: a burst of garbage in an otherwise quiet process is collected and its
// pages handed back by Run, without another allocation to start a collection.
func TestRunReturnsAfterABurst(t *testing.T) {
	for i := 0; i < 4096; i++ {
		sink = append(sink, make([]byte, 4096)) // 16 MiB
	}
	sink = nil
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan int)
	go func() { done <- Run(ctx, 50*time.Millisecond) }()
	var ms runtime.MemStats
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		runtime.ReadMemStats(&ms)
		if ms.HeapIdle-ms.HeapReleased < Floor && ms.HeapAlloc < 8*mib {
			break
		}
	}
	cancel()
	if n := <-done; n == 0 {
		t.Fatalf("Run forced no return after a 16 MiB burst (heap alloc %d, idle unreleased %d)", ms.HeapAlloc, ms.HeapIdle-ms.HeapReleased)
	}
	if ms.HeapIdle-ms.HeapReleased >= Floor {
		t.Fatalf("after Run, %d bytes of the heap are free and not returned", ms.HeapIdle-ms.HeapReleased)
	}
}

// TestReturnEmptiesPools: what a burst left in a sync.Pool is freed by a return, with no
// other collection in between (one collection only moves it to the pool's victim cache).
func TestReturnEmptiesPools(t *testing.T) {
	var (
		pool sync.Pool
		wp   weak.Pointer[byte]
	)
	func() {
		b := make([]byte, 1<<20)
		wp = weak.Make(&b[0])
		pool.Put(&b)
	}()
	Return()
	if wp.Value() != nil {
		t.Fatal("a buffer put in a sync.Pool before Return is still reachable after it")
	}
	runtime.KeepAlive(&pool)
}
