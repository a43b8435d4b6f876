// Package promtext serves a metrics.Registry in the Prometheus text format
// for the examples' /metrics endpoints.
package promtext

import (
	"net/http"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sniffsplice/sniff/metrics"
	sniffprom "github.com/sniffsplice/sniff/metrics/prometheus"
)

// Handler serves reg through metrics/prometheus and client_golang, with the
// Go runtime's and the process's standard families beside it (go_goroutines,
// go_memstats_*, process_resident_memory_bytes, process_open_fds: what an
// operator, and the overload harness in bench/overload, watches). A
// collector error is reported in the scrape, not by failing it.
func Handler(reg *metrics.Registry) http.Handler {
	pr := prom.NewRegistry()
	pr.MustRegister(sniffprom.NewCollector(reg, sniffprom.Options{}))
	pr.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(pr, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
