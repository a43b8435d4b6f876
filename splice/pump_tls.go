package splice

import (
	"crypto/tls"
	"errors"
	"os"
	"time"
)

// longAgo is a read deadline in the past: a Read then returns what the
// connection holds in memory and fails at once instead of waiting.
var longAgo = time.Unix(1, 0)

// copyTLS copies from a *tls.Conn. crypto/tls reads whole records from the
// network and keeps what a Read did not take (the rest of a record's
// plaintext, whole records behind it) in memory, where a deadline in the
// past still reaches it; so the direction waits in a small buffer
// (Joiner.WaitBufferSize; 1 KiB by default) without ever writing a message
// out in two parts: a read that fills the wait buffer moves to the larger
// buffer (one record's 16 KiB, or WaitBufferSize if larger: crypto/tls
// returns no more per Read), takes what src already holds with one Read
// under such a deadline, and writes it all at once. The direction stays in
// the larger buffer while reads fill it (a stream of full records) and goes
// back to the wait buffer after one that does not. It owns src's read
// deadline: cleared at the start, set and cleared around each heldBytes.
func (p *pump) copyTLS(src *tls.Conn) result {
	wait, big := p.s.tlsWait, min(p.s.big, max(p.s.tlsWait, maxRecord))
	src.SetReadDeadline(time.Time{}) // heldBytes clears it after each use: no deadline from before lasts
	b := p.getBuf(wait)
	defer func() { p.putBuf(b) }()
	for {
		n, err := src.Read(*b)
		if err == nil && n == len(*b) && n < big {
			nb := p.getBuf(big)
			copy(*nb, (*b)[:n])
			p.putBuf(b)
			b = nb
			var m int
			m, err = p.heldBytes(src, (*b)[n:])
			n += m
		}
		if r, done := p.pass((*b)[:n], err); done {
			return r
		}
		if n < len(*b) && len(*b) > wait { // the message is over
			p.putBuf(b)
			b = p.getBuf(wait)
		}
	}
}

// heldBytes reads into b what src holds in memory (the rest of the record
// the last Read began; a whole record received with it), without waiting
// for the network.
func (p *pump) heldBytes(src *tls.Conn, b []byte) (int, error) {
	src.SetReadDeadline(longAgo)
	n, err := src.Read(b)
	src.SetReadDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil // nothing more in memory (a timeout is not kept by crypto/tls)
	}
	return n, err
}
