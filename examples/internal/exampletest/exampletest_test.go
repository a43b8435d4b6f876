package exampletest

import (
	"context"
	"fmt"
	"io"
	"net"
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
func (f *fakeT) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }
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

// TestRunInProcess runs a minimal program in the shape of the examples
// (listen, report ready, log, stop on cancel) and checks that the helper
// returns its bound address and output, and that cleanup stopped it.
func TestRunInProcess(t *testing.T) {
	stopped := make(chan struct{})
	t.Run("prog", func(t *testing.T) {
		ready := make(chan net.Addr, 1)
		addr, out := RunInProcess(t, "prog", ready, func(ctx context.Context, out io.Writer) error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer ln.Close()
			fmt.Fprintf(out, "prog: listening on %s\n", ln.Addr())
			ready <- ln.Addr()
			<-ctx.Done()
			fmt.Fprintln(out, "prog: stopped")
			close(stopped)
			return nil
		})
		c, err := net.Dial("tcp", addr.String())
		require.NoError(t, err, "the address returned is the one bound")
		c.Close()
		require.Equal(t, "prog: listening on "+addr.String()+"\n", out.String())
	})
	select {
	case <-stopped:
	default:
		t.Fatal("the program was not stopped when its test ended")
	}
}

func TestRunRefused(t *testing.T) {
	sh := RequireProgram(t, "sh", "dash")
	require.Equal(t, "prog: bad flag\n", RunRefused(t, sh, "-c", "echo 'prog: bad flag' >&2; exit 2"))
	for _, script := range []string{
		"exit 0",            // accepted
		"exit 1",            // failed, but not as a usage error
		"echo oops; exit 2", // status 2 with output on stdout
	} {
		ft := &fakeT{}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // Fatalf ends the goroutine through runtime.Goexit.
			defer wg.Done()
			RunRefused(ft, sh, "-c", script)
		}()
		wg.Wait()
		require.True(t, ft.failed, "%q passed RunRefused", script)
	}
}

// TestInterrupt: a program that stops cleanly on SIGINT passes; one that
// exits non-zero or ends with other output fails the test.
func TestInterrupt(t *testing.T) {
	sh := RequireProgram(t, "sh", "dash")
	p, _ := StartProgram(t, "ready", sh, "-c", `trap 'echo prog: stopped; exit 0' INT; echo ready; while :; do sleep 0.05; done`)
	require.Equal(t, "ready\nprog: stopped\n", p.Interrupt(t, "prog: stopped\n"))

	for _, tc := range []struct{ script, last string }{
		{`trap 'echo prog: stopped; exit 1' INT; echo ready; while :; do sleep 0.05; done`, "prog: stopped\n"},
		{`trap 'echo prog: stopped; exit 0' INT; echo ready; while :; do sleep 0.05; done`, "prog: done\n"},
	} {
		p, _ := StartProgram(t, "ready", sh, "-c", tc.script)
		ft := &fakeT{TB: t}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // Fatalf ends the goroutine through runtime.Goexit.
			defer wg.Done()
			p.Interrupt(ft, tc.last)
		}()
		wg.Wait()
		require.True(t, ft.failed, "%q passed Interrupt", tc.script)
	}
}
