package metrics

import (
	"slices"

	"github.com/sniffsplice/sniff/detect"
)

// waiterSource is one named source of detect.Waiter counts (AddWaiter).
type waiterSource struct {
	name  string
	stats func() detect.WaitStats
}

// AddWaiter makes the counts of a detect.Waiter part of the registry (the waiter_* families),
// labelled waiter=name; stats is called at each snapshot: a Waiter's Stats method, or a function
// that sums several (a proxy's listeners). Adding a name again replaces its source; at most
// Config.MaxLabelValues names are kept, later ones are ignored. A nil Registry does nothing.
func (r *Registry) AddWaiter(name string, stats func() detect.WaitStats) {
	if r == nil || stats == nil {
		return
	}
	r.waitMu.Lock()
	defer r.waitMu.Unlock()
	for i := range r.waiters {
		if r.waiters[i].name == name {
			r.waiters[i].stats = stats
			return
		}
	}
	if len(r.waiters) >= r.maxValues() {
		return
	}
	r.waiters = append(r.waiters, waiterSource{name, stats})
}

// eachWaiter calls fn with the name and counts of every waiter source.
func (r *Registry) eachWaiter(fn func(name string, st detect.WaitStats)) {
	r.waitMu.Lock()
	sources := slices.Clone(r.waiters)
	r.waitMu.Unlock()
	for _, s := range sources {
		fn(s.name, s.stats())
	}
}

// waiterOutcomes are the outcome label values of waiter_connections_total, with their counts.
var waiterOutcomes = [...]struct {
	name  string
	count func(detect.WaitStats) uint64
}{
	{"ready", func(st detect.WaitStats) uint64 { return st.Ready }},
	{"timed_out", func(st detect.WaitStats) uint64 { return st.TimedOut }},
	{"shed", func(st detect.WaitStats) uint64 { return st.Shed }},
	{"closed", func(st detect.WaitStats) uint64 { return st.Closed }},
}

// waiterFamily reads one value of every waiter source, labelled by its name.
func waiterFamily(v func(detect.WaitStats) float64) func(*Registry, *familyWriter) {
	return func(r *Registry, w *familyWriter) {
		r.eachWaiter(func(name string, st detect.WaitStats) {
			w.buf = append(w.buf, name)
			w.add(v(st), nil)
		})
	}
}
