// Package detect holds the interop tests of the detect package with
// grpc-go: active and passive gRPC detection in front of a real grpc.Server,
// a grpc-go client through a Mux, and a grpc-go server behind
// DetectUpstream.
package detect
