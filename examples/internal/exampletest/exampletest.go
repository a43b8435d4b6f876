// Package exampletest holds helpers shared by the example programs' tests.
package exampletest

import (
	"bytes"
	"os"
	"os/exec"
	"sync"
	"testing"
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
