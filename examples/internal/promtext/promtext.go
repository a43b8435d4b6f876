// Package promtext serves a metrics.Registry in the Prometheus text format
// for the examples' /metrics endpoints.
package promtext

import (
	"net/http"
	"regexp"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sniffsplice/sniff/metrics"
	sniffprom "github.com/sniffsplice/sniff/metrics/prometheus"
)

// Handler serves reg through metrics/prometheus and client_golang, with the
// Go runtime's and the process's standard families beside it (go_goroutines,
// go_memstats_*, process_resident_memory_bytes, process_open_fds: what an
// operator, and the overload harness in bench/overload, watches), and the
// live heap the last collection found (go_gc_heap_live_bytes: unlike the RSS
// and go_memstats_*, it falls when connections let go of their memory and a
// collection has run since). A collector error is reported in the scrape,
// not by failing it.
func Handler(reg *metrics.Registry) http.Handler {
	pr := prom.NewRegistry()
	pr.MustRegister(sniffprom.NewCollector(reg, sniffprom.Options{}))
	goc := collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)}))
	pr.MustRegister(goc, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(pr, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
