package opaque

import (
	"testing"

	"github.com/sniffsplice/sniff/internal/testnet"
)

// Bound and RaceEnabled give the external test package (opaque_test) the
// package's watchdog and race flag, so both test packages share one of each.
func Bound(t testing.TB) { bound(t) }

// RaceEnabled reports whether the race detector is on.
const RaceEnabled = testnet.RaceEnabled
