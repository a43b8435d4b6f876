package proxyproto

import (
	"errors"
	"net/netip"
)

// The kinds of error of this package. Every error it returns is an
// [*Error] whose Kind is one of these (or, when the context ended the
// read, the context's error), so errors.Is(err, ErrInvalid) and the like
// work; errors.As gives the *Error with the details.
var (
	// ErrNoHeader: the policy requires a header and the connection began
	// with something else, or closed before sending a byte.
	ErrNoHeader = errors.New("proxyproto: no PROXY header")
	// ErrUnexpectedHeader: a header came from a source whose policy is
	// Reject.
	ErrUnexpectedHeader = errors.New("proxyproto: PROXY header from a source not allowed to send one")
	// ErrInvalid: the bytes begin like a header (the v2 signature or
	// "PROXY") but break the protocol's rules.
	ErrInvalid = errors.New("proxyproto: invalid PROXY header")
	// ErrChecksum: the header's PP2_TYPE_CRC32C does not match its bytes.
	ErrChecksum = errors.New("proxyproto: PROXY header checksum mismatch")
	// ErrTruncated: the bytes (Parse) or the connection (the peer closed)
	// ended inside a header.
	ErrTruncated = errors.New("proxyproto: truncated PROXY header")
	// ErrTimeout: the header timeout passed before a complete header (Err
	// is os.ErrDeadlineExceeded).
	ErrTimeout = errors.New("proxyproto: timeout waiting for the PROXY header")
	// ErrRead: reading the connection failed (Err says how, e.g.
	// syscall.ECONNRESET).
	ErrRead = errors.New("proxyproto: reading the PROXY header failed")
)

// Error is the error of this package: one line, its Kind one of the Err*
// values above (or the context's error), Detail what exactly was wrong,
// Err the underlying cause when there is one.
type Error struct {
	Kind   error
	Detail string         // e.g. "v2 command 0x5"; may be empty
	Source netip.AddrPort // the connection's remote address, when known
	Err    error          // the underlying error (I/O, deadline, context), or nil
}

// Error returns "<kind>: <detail> (from <source>): <cause>", leaving out
// the parts that are empty.
func (e *Error) Error() string {
	s := e.Kind.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Source.IsValid() {
		s += " (from " + e.Source.String() + ")"
	}
	if e.Err != nil && e.Err != e.Kind {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns Kind and Err, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

func invalid(detail string) *Error { return &Error{Kind: ErrInvalid, Detail: detail} }

var errUnsupported = errors.ErrUnsupported
