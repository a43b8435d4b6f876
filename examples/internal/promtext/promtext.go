// Package promtext serves a metrics.Registry in the Prometheus text format
// for the examples' /metrics endpoints.
package promtext

import (
	"net/http"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sniffsplice/sniff/metrics"
	sniffprom "github.com/sniffsplice/sniff/metrics/prometheus"
)

// Handler serves reg through metrics/prometheus and client_golang. A
// collector error is reported in the scrape, not by failing it.
func Handler(reg *metrics.Registry) http.Handler {
	pr := prom.NewRegistry()
	pr.MustRegister(sniffprom.NewCollector(reg, sniffprom.Options{}))
	return promhttp.HandlerFor(pr, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
