package metrics

import (
	"slices"
)

// Histogram is a snapshot of a duration histogram.
type Histogram struct {
	// Bounds are the bucket upper bounds in seconds, ascending (+Inf is implied).
	Bounds []float64
	// Counts[i] is the number of observations <= Bounds[i] (cumulative).
	Counts []uint64
	// Count is the number of observations (the +Inf bucket).
	Count uint64
	// Sum is the sum of all observations, in seconds.
	Sum float64
}

// merge adds the observations of o, which must have the same bounds, to h. A zero h takes o's
// bounds.
func (h *Histogram) merge(o Histogram) {
	if h.Counts == nil {
		h.Bounds = append([]float64(nil), o.Bounds...)
		h.Counts = make([]uint64, len(o.Counts))
	}
	for i := range o.Counts {
		h.Counts[i] += o.Counts[i]
	}
	h.Count += o.Count
	h.Sum += o.Sum
}

// Series is one label combination of a metric family.
type Series struct {
	Labels []string // label values, in the order of Desc.Labels
	// Value is a counter's or gauge's value, or a histogram's count.
	Value float64
	// Histogram is set for the families of KindHistogram.
	Histogram Histogram
}

// Family is the snapshot of one metric family: its description and its series, sorted by label
// values. A family nothing was counted in yet has no series.
type Family struct {
	Desc
	Series []Series
}

// Snapshot is a point-in-time copy of every counter of a Registry: one Family per Desc of Descs, in
// that order. Exporters (metrics/prometheus) turn it into their format; tests and status pages read
// values with Value and Histogram.
type Snapshot struct {
	Families []Family
}

// Snapshot copies the current value of every counter. Counters keep moving while it runs; each
// value is read atomically. A nil Registry returns the zero Snapshot.
func (r *Registry) Snapshot() Snapshot {
	if r == nil {
		return Snapshot{}
	}
	// The label names of every family share one backing array, copied from the declarations.
	n := 0
	for i := range families {
		n += len(families[i].labels)
	}
	names := make([]string, 0, n)
	s := Snapshot{Families: make([]Family, len(families))}
	writers := make([]familyWriter, len(families)) // one allocation, not one per family
	for i := range families {
		f := &families[i]
		start := len(names)
		names = append(names, f.labels...)
		w := &writers[i]
		f.read(r, w)
		slices.SortFunc(w.series, func(a, b Series) int { return slices.Compare(a.Labels, b.Labels) })
		s.Families[i] = Family{
			Desc:   Desc{Name: f.name, Kind: f.kind, Help: f.help, Labels: names[start:len(names):len(names)]},
			Series: w.series,
		}
	}
	return s
}

// Family returns the family named name (false when the snapshot has none of that name).
func (s Snapshot) Family(name string) (Family, bool) {
	for _, f := range s.Families {
		if f.Name == name {
			return f, true
		}
	}
	return Family{}, false
}

// Value returns the sum of the values of the series of family name whose labels match pairs, given
// as label name then value ("direction", "inbound", ...); a label not named matches any value, and
// a name without a value matches "". A histogram series counts its observations. It returns 0 when
// no series matches.
//
//	s.Value("tcp_open_total", "direction", "inbound", "protocol", "HTTP/1")
func (s Snapshot) Value(name string, pairs ...string) float64 {
	var v float64
	s.each(name, pairs, func(se *Series) { v += se.Value })
	return v
}

// Histogram returns the histograms of the series of family name whose labels match pairs (as for
// Value), merged into one.
func (s Snapshot) Histogram(name string, pairs ...string) Histogram {
	var h Histogram
	s.each(name, pairs, func(se *Series) { h.merge(se.Histogram) })
	return h
}

// each calls fn for every series of family name whose labels match pairs.
func (s Snapshot) each(name string, pairs []string, fn func(*Series)) {
	f, ok := s.Family(name)
	if !ok {
		return
	}
	idx := make([]int, 0, (len(pairs)+1)/2)
	for i := 0; i < len(pairs); i += 2 {
		j := slices.Index(f.Labels, pairs[i])
		if j < 0 {
			return // a label the family does not have matches nothing
		}
		idx = append(idx, j)
	}
series:
	for k := range f.Series {
		se := &f.Series[k]
		for n, j := range idx {
			want := ""
			if 2*n+1 < len(pairs) {
				want = pairs[2*n+1]
			}
			if se.Labels[j] != want {
				continue series
			}
		}
		fn(se)
	}
}
