package metrics

import (
	"strconv"
	"strings"
)

// Rows renders the series of family name in s, one string each, in order: the label values
// separated by spaces ("" for an empty one), " = ", and the value.
func Rows(s Snapshot, name string) []string {
	f, _ := s.Family(name)
	var out []string
	for _, se := range f.Series {
		parts := make([]string, 0, len(se.Labels)+2)
		for _, l := range se.Labels {
			if l == "" {
				l = `""`
			}
			parts = append(parts, l)
		}
		parts = append(parts, "=", strconv.FormatFloat(se.Value, 'f', -1, 64))
		out = append(out, strings.Join(parts, " "))
	}
	return out
}
