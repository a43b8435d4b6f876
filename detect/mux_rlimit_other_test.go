//go:build !unix

package detect_test

import "testing"

// raiseNoFile does nothing where there is no RLIMIT_NOFILE.
func raiseNoFile(*testing.T, uint64) {}
