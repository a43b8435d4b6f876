// Package metrics holds the interop tests of the metrics package and its
// Prometheus adapter with grpc-go: grpc-status read from a real gRPC
// server's trailers, on the handler and the round-tripper side, and the
// exposition of those counts.
package metrics
