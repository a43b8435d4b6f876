package cliflag

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func newSet() (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("prog", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", "127.0.0.1:1", "`address`")
	fs.Usage = func() { io.WriteString(fs.Output(), "Usage: prog\n"); fs.PrintDefaults() }
	return fs, addr
}

func TestParse(t *testing.T) {
	fs, addr := newSet()
	var stderr bytes.Buffer
	if err := Parse(fs, []string{"-addr", "[::1]:2"}, &stderr); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if *addr != "[::1]:2" || stderr.Len() != 0 {
		t.Fatalf("addr %q, stderr %q", *addr, stderr.String())
	}
}

func TestParseHelp(t *testing.T) {
	fs, _ := newSet()
	var stderr bytes.Buffer
	err := Parse(fs, []string{"-h"}, &stderr)
	if !errors.Is(err, flag.ErrHelp) || errors.Is(err, ErrUsage) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	if got := stderr.String(); got != "Usage: prog\n  -addr address\n    \taddress (default \"127.0.0.1:1\")\n" {
		t.Fatalf("usage printed: %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-nosuch"}, "bad command line: flag provided but not defined: -nosuch"},
		{[]string{"extra", "more"}, `bad command line: unexpected arguments ["extra" "more"]`},
	} {
		fs, _ := newSet()
		var stderr bytes.Buffer
		err := Parse(fs, tc.args, &stderr)
		if !errors.Is(err, ErrUsage) || err.Error() != tc.want {
			t.Errorf("%q: err = %v, want %q wrapping ErrUsage", tc.args, err, tc.want)
		}
		if stderr.Len() != 0 {
			t.Errorf("%q: printed %q; errors are the caller's to print", tc.args, stderr.String())
		}
	}
}

func TestHostPort(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:0", "[::1]:8443", ":80", "localhost:http"} {
		if err := HostPort("-listen", ok); err != nil {
			t.Errorf("HostPort(%q) = %v", ok, err)
		}
	}
	err := HostPort("-listen", "127.0.0.1")
	if !errors.Is(err, ErrUsage) || err.Error() != `bad command line: -listen "127.0.0.1": address 127.0.0.1: missing port in address` {
		t.Fatalf("HostPort(no port) = %v", err)
	}
}

func TestMainExitStatus(t *testing.T) {
	parse := func(args []string, stderr io.Writer) (string, error) {
		fs, addr := newSet()
		err := Parse(fs, args, stderr)
		return *addr, err
	}
	runErr := errors.New("listen failed")
	run := func(ctx context.Context, addr string, stdout io.Writer) error {
		if addr == "fail:1" {
			return runErr
		}
		io.WriteString(stdout, "ran "+addr+"\n")
		return nil
	}
	for _, tc := range []struct {
		args                 []string
		code                 int
		wantStdout, wantErr  string
		wantUsagePrefixInErr bool
	}{
		{[]string{"-addr", "127.0.0.1:5"}, 0, "ran 127.0.0.1:5\n", "", false},
		{[]string{"-h"}, 0, "", "Usage: prog\n", true},
		{[]string{"x"}, 2, "", "prog: bad command line: unexpected arguments [\"x\"] (see -h)\n", false},
		{[]string{"-addr", "fail:1"}, 1, "", "prog: listen failed\n", false},
	} {
		var stdout, stderr bytes.Buffer
		code := main1(context.Background(), "prog", tc.args, &stdout, &stderr, parse, run)
		if code != tc.code || stdout.String() != tc.wantStdout {
			t.Errorf("%q: exit %d stdout %q, want %d %q", tc.args, code, stdout.String(), tc.code, tc.wantStdout)
		}
		if got := stderr.String(); tc.wantUsagePrefixInErr && !strings.HasPrefix(got, tc.wantErr) || !tc.wantUsagePrefixInErr && got != tc.wantErr {
			t.Errorf("%q: stderr %q, want %q", tc.args, got, tc.wantErr)
		}
	}
}
