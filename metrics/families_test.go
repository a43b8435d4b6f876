package metrics

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
)

// docTable reads the table of metrics in doc.go: name, type and label names of each row, in
// order. Columns are found from the header line; a row with an empty name continues the row above.
func docTable(t *testing.T) []Desc {
	t.Helper()
	src, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	var out []Desc
	var cols []int // start of type, labels, meaning
	for _, line := range strings.Split(string(src), "\n") {
		text, ok := strings.CutPrefix(line, "//\t")
		if !ok {
			if cols != nil && len(out) > 0 {
				break // the end of the table
			}
			continue
		}
		if strings.HasPrefix(text, "name ") {
			cols = []int{strings.Index(text, "type"), strings.Index(text, "labels"), strings.Index(text, "meaning")}
			continue
		}
		if cols == nil || len(text) < cols[2] {
			continue
		}
		name := strings.TrimSpace(text[:cols[0]])
		labels := strings.TrimSpace(text[cols[1]:cols[2]])
		if name == "" { // a continuation of the labels above
			d := &out[len(out)-1]
			d.Labels = append(d.Labels, splitLabels(labels)...)
			continue
		}
		d := Desc{Name: name}
		switch typ := strings.TrimSpace(text[cols[0]:cols[1]]); typ {
		case "counter":
			d.Kind = KindCounter
		case "gauge":
			d.Kind = KindGauge
		case "histogram":
			d.Kind = KindHistogram
		default:
			t.Fatalf("doc.go: %s: unknown type %q", name, typ)
		}
		if as, ok := strings.CutPrefix(labels, "as "); ok {
			i := slices.IndexFunc(out, func(o Desc) bool { return o.Name == as })
			require.GreaterOrEqual(t, i, 0, "doc.go: %s: labels as %s", name, as)
			d.Labels = slices.Clone(out[i].Labels)
		} else {
			d.Labels = splitLabels(labels)
		}
		out = append(out, d)
	}
	return out
}

func splitLabels(s string) []string {
	var out []string
	for _, l := range strings.Split(s, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestDocTable: the table in the package documentation lists exactly the declared families, in
// order, with their types and labels, so the declaration and its documentation cannot drift.
func TestDocTable(t *testing.T) {
	doc := docTable(t)
	var want []Desc
	for _, d := range Descs() {
		want = append(want, Desc{Name: d.Name, Kind: d.Kind, Labels: d.Labels})
	}
	assert.Equal(t, want, doc)
	require.Len(t, doc, 22)
}

// populated returns a registry with something counted in every family.
func populated() *Registry {
	r := New(Config{Ports: opaque.NewPortSet(3306), PeerIdentities: true})
	c := r.OpenConn(ConnLabels{Direction: opaque.Outbound, Protocol: "HTTP/1", TLS: TLSTrue})
	c.AddRead(10)
	c.AddWritten(20)
	c.End(splice.Stats{Err: syscall.ECONNRESET, Duration: time.Second})
	r.ObserveDetection(opaque.Inbound, "HTTP/1", "matched", time.Millisecond)
	r.ObserveDecision(opaque.Inbound, "opaque", 3306)
	r.ObserveHandshake(opaque.Inbound, OutcomeSuccess, "spiffe://td/a", time.Millisecond)
	r.ObserveTransportHeader(HeaderWritten, "HTTP/2")
	r.ObserveTransportHeader(HeaderRead, "none")
	r.ObserveTransportHeader(HeaderRejected, "no_preface")
	r.ObserveMux("routed", "HTTP/1")
	r.AddWaiter("first_bytes", func() detect.WaitStats { return detect.WaitStats{Waiting: 2, Ready: 5, Detached: 1, Reduced: 3} })
	r.ObserveHTTPError(opaque.Inbound, 400, time.Millisecond)
	return r
}

// TestSnapshotFollowsDescs: a snapshot has one family per Desc, in order, with the Desc; every
// series has one value per label, sorted; counters and gauges carry no histogram, histograms
// carry their bounds and count.
func TestSnapshotFollowsDescs(t *testing.T) {
	s := populated().Snapshot()
	descs := Descs()
	require.Len(t, s.Families, len(descs))
	for i, f := range s.Families {
		assert.Equal(t, descs[i], f.Desc)
		require.NotEmpty(t, f.Series, f.Name)
		assert.True(t, slices.IsSortedFunc(f.Series, func(a, b Series) int { return slices.Compare(a.Labels, b.Labels) }), f.Name)
		for _, se := range f.Series {
			assert.Len(t, se.Labels, len(f.Labels), f.Name)
			if f.Kind == KindHistogram {
				assert.NotEmpty(t, se.Histogram.Bounds, f.Name)
				assert.Equal(t, float64(se.Histogram.Count), se.Value, f.Name)
			} else {
				assert.Zero(t, se.Histogram, f.Name)
			}
		}
	}
	// The descriptions are copies: changing one changes nothing else.
	descs[0].Labels[0] = "x"
	s.Families[0].Labels[0] = "y"
	assert.Equal(t, "direction", Descs()[0].Labels[0])
}

// TestSnapshotValue: Value sums the series whose labels match the pairs given; a label not named
// matches anything, a name without a value matches "", an unknown label or family matches nothing.
func TestSnapshotValue(t *testing.T) {
	r := New(Config{})
	r.ObserveDetection(opaque.Inbound, "HTTP/1", "matched", time.Millisecond)
	r.ObserveDetection(opaque.Inbound, "HTTP/1", "matched", time.Millisecond)
	r.ObserveDetection(opaque.Outbound, "HTTP/1", "matched", time.Millisecond)
	r.ObserveDetection(opaque.Outbound, "TLS", "matched", 3*time.Millisecond)
	r.ObserveMux("routed", "")
	s := r.Snapshot()
	assert.Equal(t, 4.0, s.Value("protocol_detect_total"))
	assert.Equal(t, 3.0, s.Value("protocol_detect_total", "protocol", "HTTP/1"))
	assert.Equal(t, 2.0, s.Value("protocol_detect_total", "protocol", "HTTP/1", "direction", "inbound"))
	assert.Zero(t, s.Value("protocol_detect_total", "protocol", "SSH"))
	assert.Zero(t, s.Value("protocol_detect_total", "port", "80"), "a label the family does not have")
	assert.Zero(t, s.Value("no_such_total"))
	assert.Equal(t, 2.0, s.Value("protocol_detect_duration_seconds", "direction", "outbound"), "a histogram's count")
	assert.Zero(t, s.Value("protocol_detect_total", "protocol"), "a name without a value matches the empty value")
	assert.Equal(t, 1.0, s.Value("mux_connections_total", "outcome", "routed", "protocol", "unknown"))

	h := s.Histogram("protocol_detect_duration_seconds", "direction", "outbound")
	assert.Equal(t, uint64(2), h.Count)
	assert.InDelta(t, 0.004, h.Sum, 1e-9)
	assert.Equal(t, detectBuckets, h.Bounds)
	assert.Zero(t, s.Histogram("protocol_detect_duration_seconds", "direction", "sideways"))
}
