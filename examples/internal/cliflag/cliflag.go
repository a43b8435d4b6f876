// Package cliflag holds the command-line handling shared by the example
// programs: parsing a flag set whose errors are returned (not printed), and
// checking address flags.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
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
