package main

import (
	"strconv"

	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/opaque"
)

// requestCount reads request_total of one direction from a snapshot.
func requestCount(s metrics.Snapshot, dir opaque.Direction) uint64 {
	return uint64(s.Value("request_total", "direction", dir.String()))
}

// responseCount reads response_total of one direction, status code (0: no response) and
// grpc-status ("" for none) from a snapshot, summed over authorities and routes.
func responseCount(s metrics.Snapshot, dir opaque.Direction, status int, grpcStatus string) uint64 {
	code := ""
	if status != 0 {
		code = strconv.Itoa(status)
	}
	return uint64(s.Value("response_total", "direction", dir.String(), "status_code", code, "grpc_status", grpcStatus))
}
