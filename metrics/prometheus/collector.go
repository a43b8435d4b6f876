// Package prometheus exposes a metrics.Registry to Prometheus through client_golang: a Collector
// reads the registry's counters at scrape time and turns them into constant metrics. Names, types,
// labels and HELP text come from metrics.Descs, where each family is declared once; this package
// adds none of its own.
//
// It is the only package of sniff that imports client_golang. The package name clashes with
// client_golang's own; import it under another name, e.g.
//
//	import sniffprom "github.com/sniffsplice/sniff/metrics/prometheus"
package prometheus

import (
	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/sniffsplice/sniff/metrics"
)

// Options configures a Collector. The zero value exports the metric names unprefixed, as Linkerd's
// proxy does.
type Options struct {
	// Namespace, if set, prefixes every metric name ("sniff" gives sniff_tcp_open_total).
	Namespace string
	// ConstLabels are added to every metric (e.g. the pod name). Their names must differ from the
	// metrics' own label names; a clash makes Gather fail with an error.
	ConstLabels prom.Labels
}

// Collector is a prometheus.Collector reading a metrics.Registry. Register it with a
// prometheus.Registerer; every scrape takes one Snapshot. Its metrics are the families of
// metrics.Descs, with their names, help, types and labels.
type Collector struct {
	reg   *metrics.Registry
	descs map[string]*prom.Desc // by family name
	order []*prom.Desc          // in metrics.Descs order, for Describe
}

var _ prom.Collector = (*Collector)(nil)

// NewCollector returns a Collector for reg. A nil reg yields a collector that exports nothing but
// still describes its metrics.
func NewCollector(reg *metrics.Registry, o Options) *Collector {
	c := &Collector{reg: reg, descs: map[string]*prom.Desc{}}
	for _, d := range metrics.Descs() {
		pd := prom.NewDesc(prom.BuildFQName(o.Namespace, "", d.Name), d.Help, d.Labels, o.ConstLabels)
		c.descs[d.Name] = pd
		c.order = append(c.order, pd)
	}
	return c
}

// Describe sends the descriptors of every metric the collector may export.
func (c *Collector) Describe(ch chan<- *prom.Desc) {
	for _, d := range c.order {
		ch <- d
	}
}

// Collect takes a snapshot of the registry and sends it as const metrics.
func (c *Collector) Collect(ch chan<- prom.Metric) {
	for _, f := range c.reg.Snapshot().Families {
		d := c.descs[f.Name]
		for _, s := range f.Series {
			var m prom.Metric
			var err error
			switch f.Kind {
			case metrics.KindCounter:
				m, err = prom.NewConstMetric(d, prom.CounterValue, s.Value, s.Labels...)
			case metrics.KindGauge:
				m, err = prom.NewConstMetric(d, prom.GaugeValue, s.Value, s.Labels...)
			case metrics.KindHistogram:
				h := s.Histogram
				b := make(map[float64]uint64, len(h.Bounds))
				for i, ub := range h.Bounds {
					b[ub] = h.Counts[i]
				}
				m, err = prom.NewConstHistogram(d, h.Count, h.Sum, b, s.Labels...)
			}
			// A bad descriptor (e.g. a ConstLabels name that clashes with a label) becomes an
			// invalid metric, which the registry reports as a Gather error, instead of a panic.
			if err != nil {
				m = prom.NewInvalidMetric(d, err)
			}
			ch <- m
		}
	}
}
