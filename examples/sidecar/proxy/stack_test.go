package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/internal/testnet"
)

// stackBudget is the goroutine stack, in bytes, that one HTTP/1.1 request in
// flight may hold across the pair and the backend together: sidecar A's
// connection goroutine, sidecar B's goroutine for the pooled connection that
// carries it, and net/http's handler goroutine in the backend, scanned by a
// collection while the backend holds the request. It was 21.4 KiB when
// handleOutbound, detectThenDial, HandleInbound and HandleLocal kept
// detection results by value in their frames (those frames stay on the stack
// while the connection is served), 11.3 KiB since (13.2 while the listener's
// waitThen callback built an Event in its frame), 10.3 since the inbound
// listener's callback does not either; the runtime starts every
// new goroutine with a stack sized by the average it scans, and keeps that
// much per goroutine it caches after they exit (issue 17: idle memory).
const stackBudget = 11 << 10

// stackBudgetRace is stackBudget under the race detector, which enlarges every
// frame: 15.0 KiB measured, 16.1 while the inbound listener's callback built
// an Event in its frame, 18.0 while waitThen's did too (the budget of normal
// builds was then exceeded as well: 13.2 KiB; the test skipped under the race
// detector then, and CI runs it there).
const stackBudgetRace = 16 << 10

// TestServingStackDepth holds requests in flight through the pair and
// measures the stack they hold, from the runtime's count of the stack bytes a
// collection scanned.
func TestServingStackDepth(t *testing.T) {
	const n = 32
	var (
		arrived     atomic.Int32
		release     = make(chan struct{})
		releaseOnce sync.Once
	)
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-release
	})
	dst := httpBackend(t, &http.Server{Handler: mux})
	t.Cleanup(releaseAll) // before the backend's cleanup: no handler left blocked
	var evA, evB events
	addr, _, _ := h1Pair(t, dst, &evA, &evB)
	// Warm up: one request through, so that the pool, the handshake and the
	// listeners' goroutines are there before the baseline.
	warm := dialH1(t, addr)
	resp, _ := warm.do("GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
	require.Equal(t, 200, resp.StatusCode)
	base := scannedStack(t)
	clients := make([]*h1Client, n)
	for i := range clients {
		clients[i] = dialH1(t, addr)
		clients[i].send("GET /hold HTTP/1.1\r\nHost: backend\r\n\r\n")
	}
	require.Eventually(t, func() bool { return arrived.Load() == n }, 10*time.Second, time.Millisecond,
		"requests did not all reach the backend")
	held := scannedStack(t)
	releaseAll()
	for _, c := range clients {
		resp, _ := c.read("GET")
		require.Equal(t, 200, resp.StatusCode)
		c.c.Close()
	}
	warm.c.Close()
	per := (float64(held) - float64(base)) / n
	withinBudget(t, "a request in flight, across the pair and the backend", per, stackBudget, stackBudgetRace)
}

// scannedStack runs a collection and returns the stack bytes it scanned.
func scannedStack(t *testing.T) uint64 {
	t.Helper()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/stack:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Skip("this Go has no /gc/scan/stack:bytes")
	}
	return s[0].Value.Uint64()
}

// opaqueStackBudget is the goroutine stack, in bytes, that one idle opaque
// connection may hold across the pair and the echo server behind it: on
// each sidecar the join's two goroutines (their stacks start small), and the
// server's goroutine. 20.2 KiB measured; 28.2 while the join ran on the
// connection's handler goroutine, whose stack everything before the join had
// grown to 8 KiB (finish).
const opaqueStackBudget = 24 << 10

// opaqueStackBudgetRace is opaqueStackBudget under the race detector: 37.0
// KiB measured, 44.5 with the join on the handler goroutine.
const opaqueStackBudgetRace = 40 << 10

// opaqueHeapBudget is the live heap, in bytes, that one idle opaque
// connection may hold across the pair and the echo server: 30.1 KiB measured
// (the same under the race detector); 32.4 while finish kept a copy of the
// connection's Event (about 1 KiB per sidecar) with nothing to emit it to.
const opaqueHeapBudget = 32 << 10

// TestOpaqueIdleStack holds idle opaque connections through the pair and
// measures the goroutine stack memory they hold, from the runtime's count
// after two collections (which shrink what they can), and the live heap.
func TestOpaqueIdleStack(t *testing.T) {
	addr := pairFor(t, lineEcho(t), true, false)
	const n = 200
	exchange := func() net.Conn {
		c := testnet.Dial(t, addr, 10*time.Second)
		_, err := io.WriteString(c, "hi\n")
		require.NoError(t, err)
		_, err = bufio.NewReader(c).ReadString('\n')
		require.NoError(t, err)
		return c
	}
	exchange() // the first handshake's goroutines and the pools are there before the baseline
	stack0, heap0 := idleMemory()
	for range n {
		exchange()
	}
	stack1, heap1 := idleMemory()
	per := (float64(stack1) - float64(stack0)) / n
	withinBudget(t, "an idle opaque connection, across the pair and the echo server", per, opaqueStackBudget, opaqueStackBudgetRace)
	heap := (float64(heap1) - float64(heap0)) / n
	t.Logf("live heap of an idle opaque connection, across the pair and the echo server: %.0f bytes (budget %d)", heap, opaqueHeapBudget)
	if heap > opaqueHeapBudget {
		t.Errorf("an idle opaque connection holds %.0f bytes of live heap, over the budget of %d", heap, opaqueHeapBudget)
	}
}

// withinBudget fails t when per bytes of stack (what holds them: what) are
// over budget, or over raceBudget under the race detector.
func withinBudget(t *testing.T, what string, per float64, budget, raceBudget int) {
	t.Helper()
	if testnet.RaceEnabled {
		budget = raceBudget
	}
	t.Logf("goroutine stack of %s: %.0f bytes (budget %d)", what, per, budget)
	if per > float64(budget) {
		t.Errorf("%s holds %.0f bytes of goroutine stack, over the budget of %d", what, per, budget)
	}
}

// idleMemory runs two collections and returns the bytes of goroutine stacks
// in use and of live heap.
func idleMemory() (stack, heap uint64) {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}
