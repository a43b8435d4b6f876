package prometheus_test

import (
	"fmt"
	"strings"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sniffsplice/sniff/metrics"
	sniffprom "github.com/sniffsplice/sniff/metrics/prometheus"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
)

// Register the collector with a Prometheus registry (and serve it with
// promhttp.HandlerFor); every scrape reads the counters once.
func ExampleNewCollector() {
	reg := metrics.New(metrics.Config{})
	mc := reg.OpenConn(metrics.ConnLabels{Direction: opaque.Outbound, Protocol: "opaque"})
	mc.AddRead(100)
	mc.End(splice.Stats{})

	promReg := prom.NewPedanticRegistry()
	promReg.MustRegister(sniffprom.NewCollector(reg, sniffprom.Options{Namespace: "sniff"}))

	err := testutil.GatherAndCompare(promReg, strings.NewReader(`
# HELP sniff_tcp_read_bytes_total Total count of bytes read from peers.
# TYPE sniff_tcp_read_bytes_total counter
sniff_tcp_read_bytes_total{direction="outbound",protocol="opaque",tls="false"} 100
`), "sniff_tcp_read_bytes_total")
	fmt.Println("matches:", err == nil)
	n, _ := testutil.GatherAndCount(promReg)
	fmt.Println("series:", n)
	// Output:
	// matches: true
	// series: 5
}
