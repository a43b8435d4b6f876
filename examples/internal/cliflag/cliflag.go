// Package cliflag holds the command-line handling shared by the example
// programs: parsing a flag set whose errors are returned (not printed),
// checking address flags, and the main function's exit statuses.
package cliflag

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

// ErrUsage marks command-line errors; the programs exit with status 2 on it.
var ErrUsage = errors.New("bad command line")

// Parse parses args with fs, which should be flag.ContinueOnError with its
// output discarded so that errors are printed once, by the caller. For -h it
// prints fs.Usage to stderr and returns flag.ErrHelp; a bad flag or a
// positional argument gives an error wrapping ErrUsage.
func Parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.Usage()
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	return nil
}

// HostPort checks that the value of the flag name (spelled with its dash,
// "-listen") is a host:port address; the error wraps ErrUsage.
func HostPort(name, value string) error {
	if _, _, err := net.SplitHostPort(value); err != nil {
		return fmt.Errorf("%w: %s %q: %v", ErrUsage, name, value, err)
	}
	return nil
}

// Main is the body of an example program's main function. It parses
// os.Args[1:] with parse and exits 0 for -h (flag.ErrHelp) and 2 after
// printing "NAME: ERROR (see -h)" for any other error; then it calls run
// with a context canceled by SIGINT or SIGTERM and stdout, and exits 1 after
// printing "NAME: ERROR" when run fails.
func Main[C any](name string, parse func(args []string, stderr io.Writer) (C, error), run func(ctx context.Context, cfg C, stdout io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := main1(ctx, name, os.Args[1:], os.Stdout, os.Stderr, parse, run)
	stop()
	os.Exit(code)
}

// main1 is Main up to the exit status, which it returns.
func main1[C any](ctx context.Context, name string, args []string, stdout, stderr io.Writer, parse func([]string, io.Writer) (C, error), run func(context.Context, C, io.Writer) error) int {
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v (see -h)\n", name, err)
		return 2
	}
	if err := run(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return 1
	}
	return 0
}
