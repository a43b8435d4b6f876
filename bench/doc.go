// Package bench holds benchmarks that compare sniff with other libraries and
// proxies (cmux, crypto/tls, HAProxy, socat). It is a separate module so that
// those comparison dependencies never reach a user of the library.
package bench
