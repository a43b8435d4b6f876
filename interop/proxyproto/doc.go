// Package proxyproto holds the interoperability tests of the library's
// PROXY protocol package with github.com/pires/go-proxyproto, the PROXY
// protocol library most Go servers use: its writer in front of our parser,
// ours in front of its reader, both versions, every address family.
package proxyproto
