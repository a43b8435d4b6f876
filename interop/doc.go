// Package interop holds the tests that drive the library with peers a user
// of it would bring (grpc-go, github.com/pires/go-proxyproto, go-spiffe), in
// a module of their own so that none of those dependencies reaches a module
// that imports the library.
package interop
