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
// through wrapping with errors.As, never at the text of the error.
func Errno(err error) string {
	if err == nil || errors.Is(err, io.EOF) {
		return ""
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		if name := errnoName(e); name != "" {
			return name
		}
	}
	return "other"
}
