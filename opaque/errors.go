package opaque

import "strings"

// prefix starts the message of every error of this package, once: an error that wraps another error
// of the package prints the inner message without it.
const prefix = "opaque: "

// unprefixed returns the message of err without the package prefix, for an error wrapping it.
func unprefixed(err error) string { return strings.TrimPrefix(err.Error(), prefix) }

// errorList is several errors reported at once (every bad annotation of a layer). It prints them on
// one line, separated by "; ", under one prefix; errors.Is and errors.As see each of them.
type errorList []error

func (l errorList) Error() string {
	var b strings.Builder
	b.WriteString(prefix)
	for i, err := range l {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(unprefixed(err))
	}
	return b.String()
}

func (l errorList) Unwrap() []error { return l }

// joinErrors returns nil for no errors, else an errorList (even of one, so that a caller can always
// range over Unwrap).
func joinErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errorList(errs)
}
