// Package spiffe compares sniff's package spiffe with go-spiffe v2, the reference implementation in
// Go: the same strings are SPIFFE IDs and trust domains for both (but for the specification's length
// limits, which only sniff enforces), and the same X.509-SVIDs verify.
package spiffe
