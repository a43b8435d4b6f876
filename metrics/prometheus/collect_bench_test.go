package prometheus

import (
	"testing"

	prom "github.com/prometheus/client_golang/prometheus"
)

// BenchmarkCollect: one scrape of a registry with a value in every family (Snapshot plus the
// const metrics), as a Prometheus registry's Gather runs it.
func BenchmarkCollect(b *testing.B) {
	c := NewCollector(populated(), Options{})
	ch := make(chan prom.Metric, 1024)
	b.ReportAllocs()
	for b.Loop() {
		c.Collect(ch)
		for len(ch) > 0 {
			<-ch
		}
	}
}
