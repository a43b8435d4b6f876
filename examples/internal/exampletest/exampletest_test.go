package exampletest

import (
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRequireProgramFound(t *testing.T) {
	// "sh" is in every Debian base image.
	require.NotEmpty(t, RequireProgram(t, "sh", "dash"))
}

func TestRequireProgramMissing(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			ft := &fakeT{}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // Skip and Fatal end the goroutine through runtime.Goexit.
				defer wg.Done()
				RequireProgram(ft, "no-such-program-sniff-test", "no-such-package")
			}()
			wg.Wait()
			require.Contains(t, ft.msg, "no-such-package")
			require.Equal(t, ci == "true", ft.failed, "failed")
			require.Equal(t, ci != "true", ft.skipped, "skipped")
		})
	}
}

func TestBuffer(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(&b, "%d", i)
		}()
	}
	wg.Wait()
	require.Len(t, b.String(), 4)
}

// fakeT records Skip and Fatal instead of ending the real test.
type fakeT struct {
	testing.TB
	msg             string
	failed, skipped bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatal(args ...any) {
	f.failed, f.msg = true, fmt.Sprint(args...)
	runtimeGoexit()
}
func (f *fakeT) Skip(args ...any) {
	f.skipped, f.msg = true, fmt.Sprint(args...)
	runtimeGoexit()
}

func TestStartProgram(t *testing.T) {
	sh := RequireProgram(t, "sh", "dash")
	p, line := StartProgram(t, "ready", sh, "-c", "echo starting; echo ready on 1234; exec sleep 60")
	require.Equal(t, "ready on 1234", line)
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGTERM))
	var exitErr *exec.ExitError
	require.ErrorAs(t, p.Wait(t), &exitErr)
	require.Equal(t, syscall.SIGTERM, exitErr.Sys().(syscall.WaitStatus).Signal())
	require.Contains(t, p.Out.String(), "starting\nready on 1234\n")
}
