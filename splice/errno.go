package splice

import (
	"errors"
	"io"
	"syscall"
)

// Errno classifies err the way Linkerd's tcp_close_total{errno} label does:
// "" for nil and a clean end of stream (io.EOF), the symbolic name of the
// system error behind err when there is one ("ECONNRESET", "EPIPE",
// "ETIMEDOUT", "ECONNREFUSED", ...), and "other" for anything else
// (ErrIdleTimeout, ErrLifetime, a canceled context, a TLS alert). It looks
// through wrapping (errors.AsType), never at the text of the error.
func Errno(err error) string {
	if err == nil || errors.Is(err, io.EOF) {
		return ""
	}
	// errors.AsType, not errors.As: no pointer to escape, so no allocation per classified end.
	if e, ok := errors.AsType[syscall.Errno](err); ok {
		if name := errnoName(e); name != "" {
			return name
		}
	}
	return "other"
}
