// Package exampletest holds helpers shared by the example programs' tests.
package exampletest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireProgram returns the path of the external program name (for example
// "curl" or "openssl"). When it is missing the test is skipped with a message
// naming the Debian package that provides it, except when the environment has
// CI=true: CI installs every package the tests use (.ci/run), so there a
// missing program fails the test instead of hiding it.
func RequireProgram(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := "program " + name + " not found (install the Debian package " + debianPackage + "): " + err.Error()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Buffer is a bytes.Buffer safe for concurrent use: the programs under test
// write their log to it while the test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// BuildProgram builds the main package pkg (an import path such as
// "github.com/sniffsplice/sniff/examples/sniproxy", or "./...-relative" to the
// test's directory, e.g. ".") into a temporary directory and returns the
// binary's path. It skips the test under -short (a build takes seconds) and
// when the go command is not in PATH.
func BuildProgram(t testing.TB, pkg string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the program: skipped under -short")
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not in PATH: " + err.Error())
	}
	bin := filepath.Join(t.TempDir(), "prog")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, gocmd, "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Process is a program started by StartProgram.
type Process struct {
	Cmd *exec.Cmd
	// Out collects the program's stdout and stderr.
	Out  *Buffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed
}

// StartProgram starts bin with args and waits (up to a minute) for a line
// of its output to contain marker; it returns the process and that line.
// The process is killed when the test ends if it is still running.
func StartProgram(t testing.TB, marker, bin string, args ...string) (*Process, string) {
	t.Helper()
	p := &Process{Cmd: exec.Command(bin, args...), Out: &Buffer{}, done: make(chan struct{})}
	lines := make(chan string, 64)
	lw := &lineSplitter{w: p.Out, lines: lines}
	p.Cmd.Stdout, p.Cmd.Stderr = lw, lw
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.Cmd.Process.Kill()
			<-p.done
		}
	})
	timeout := time.After(time.Minute)
	for {
		select {
		case l := <-lines:
			if bytes.Contains([]byte(l), []byte(marker)) {
				return p, l
			}
		case <-p.done:
			t.Fatalf("%s exited before printing %q: %v\n%s", bin, marker, p.err, p.Out)
		case <-timeout:
			t.Fatalf("%s did not print %q within a minute\n%s", bin, marker, p.Out)
		}
	}
}

// Wait waits (up to a minute) for the process to exit and returns its error.
func (p *Process) Wait(t testing.TB) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(time.Minute):
		t.Fatalf("process did not exit within a minute\n%s", p.Out)
		return nil
	}
}

// Interrupt sends the process SIGINT, as a user's ^C, and requires that it
// exit with status 0 (within a minute) after printing last as its final
// output. It returns everything the process printed.
func (p *Process) Interrupt(t testing.TB, last string) string {
	t.Helper()
	if err := p.Cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("SIGINT: %v", err)
	}
	if err := p.Wait(t); err != nil {
		t.Fatalf("exit status after SIGINT: %v\n%s", err, p.Out)
	}
	out := p.Out.String()
	if !strings.HasSuffix(out, last) {
		t.Fatalf("output after SIGINT does not end with %q:\n%s", last, out)
	}
	return out
}

// lineSplitter writes to w and sends every complete line to lines (dropping
// lines when nobody reads them).
type lineSplitter struct {
	mu    sync.Mutex
	w     *Buffer
	part  []byte
	lines chan string
}

func (l *lineSplitter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(p)
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		select {
		case l.lines <- string(l.part[:i]):
		default:
		}
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

// RunInProcess starts an example program in-process: it calls run in a
// goroutine with a context and a Buffer for the program's output, and waits
// (up to 30 s) for the program to send its bound address on ready. It checks
// that the output then says "NAME: listening on ADDRESS". When the test ends
// it cancels the context and checks that run returned nil within 30 s and that
// the output says "NAME: stopped"; the output is logged if the test failed.
func RunInProcess(t testing.TB, name string, ready <-chan net.Addr, run func(ctx context.Context, out io.Writer) error) (net.Addr, *Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, out) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("run ended before it was ready: %v\n%s", err, out)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("run not ready after 30s\n%s", out)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run's result after cancel: %v\n%s", err, out)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("run did not return 30s after cancel\n%s", out)
		}
		if !strings.Contains(out.String(), name+": stopped") {
			t.Fatalf("output lacks %q\n%s", name+": stopped", out)
		}
		if t.Failed() {
			t.Logf("program output:\n%s", out)
		}
	})
	if want := name + ": listening on " + addr.String(); !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks %q\n%s", want, out)
	}
	return addr, out
}

// RunRefused runs bin with args, which it must refuse as a bad command line:
// it checks that the program exits with status 2 and writes nothing to
// stdout, and returns what it wrote to stderr.
func RunRefused(t testing.TB, bin string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 2 {
		t.Fatalf("%s %q: %v, want exit status 2\nstderr: %s", bin, args, err, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Fatalf("%s %q wrote to stdout: %q", bin, args, stdout.String())
	}
	return stderr.String()
}
