package opaque

import (
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// bound ends the test binary, with every goroutine's stack, when t runs
// past a few seconds (each test here takes well under one; six times more
// under -race). A planted bug that makes a loop of the package spin (the bit
// loops of PortSet and Compile, the item loop of ParsePortSetFunc, the reads
// of the header codec) then fails the run seconds after, within three times
// the package's test time, instead of hanging it until go test's timeout.
// Every test of this file's package starts with it: the test that first
// reaches a spinning loop is whichever runs first, seldom the limit test
// written for that loop.
func bound(t testing.TB) {
	d := 3 * time.Second
	if testnet.RaceEnabled {
		d *= 6
	}
	name := t.Name()
	tm := time.AfterFunc(d, func() {
		debug.SetTraceback("all") // the spinning test's stack, not only this timer's
		panic(fmt.Sprintf("%s ran past %v: a loop of the package does not end", name, d))
	})
	t.Cleanup(func() { tm.Stop() })
}
